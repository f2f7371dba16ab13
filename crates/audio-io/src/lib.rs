//! Audio file I/O for higgs-serve: decode common containers, downmix, resample to 24 kHz, encode wav/pcm/flac/mp3/opus.

pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
pub mod resample;

pub use decode::{
    decode_bytes, decode_file, duration_seconds, load_bytes, load_file, DecodeLimits, DecodedAudio,
};
pub use encode::{encode, StreamEncoder};
pub use error::{AudioError, Result};
pub use format::AudioFormat;
pub use resample::{resample, resampled_len};
