//! Audio file I/O for higgs-serve: decode common containers, downmix, resample to 24 kHz, encode wav/pcm/flac/mp3/opus.

pub mod decode;
pub mod error;
pub mod resample;

pub use decode::{
    decode_bytes, decode_file, duration_seconds, load_bytes, load_file, DecodeLimits, DecodedAudio,
};
pub use error::{AudioError, Result};
pub use resample::{resample, resampled_len};
