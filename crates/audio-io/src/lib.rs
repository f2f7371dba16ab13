//! Audio file I/O for higgs-serve: decode common containers, downmix, resample to 24 kHz,
//! encode wav/pcm/flac/mp3/opus.
//!
//! # Reading
//! [`decode_bytes`] / [`decode_file`] turn wav, flac, mp3, ogg/vorbis, aiff, caf, m4a/mp4
//! (aac, alac), mkv/webm (vorbis, flac, pcm) and, with the `opus` feature, ogg/webm opus into mono
//! f32 at the source rate, like
//! `librosa.load(path, sr=None, mono=True)`: integer PCM is divided by 2^(bits-1) and channels are
//! averaged. [`load_bytes`] / [`load_file`] add the resampling step (`librosa.load(path, sr=24000)`).
//! [`DecodeLimits`] bounds bytes, duration, sample rate and channels; the duration is checked from
//! the header before decoding and again while decoding. [`probe_bytes`] reads only the header
//! (container, rate, channels, declared length), for checks before anything is decoded. Every bad input is an [`AudioError`] that
//! says what was wrong and how to fix it; malformed data never panics (symphonia panics are caught
//! and reported as corrupt input; see `tests/no_panic.rs`).
//!
//! # Resampling
//! [`resample()`] is libsoxr with the `SOXR_HQ` recipe, driven exactly as librosa's default
//! `res_type="soxr_hq"` drives it, including librosa's output length `ceil(n * out / in)`. It
//! matches librosa's output on the codec goldens to 4.8e-7 (max abs).
//!
//! # Tempo
//! [`time_stretch`] / [`TimeStretch`] change the tempo of mono speech by a factor in [0.25, 4.0]
//! with the pitch kept (WSOLA, hand-written: see the [`tempo`] module for why), one-shot or
//! streaming with the same samples either way.
//!
//! # Writing
//! [`encode()`] writes a whole clip; [`StreamEncoder`] encodes incrementally for chunked HTTP
//! responses. Formats are the OpenAI speech API's [`AudioFormat`]s: wav (16-bit), pcm (s16le),
//! flac, mp3 (LAME, feature `mp3`), opus in ogg (libopus, feature `opus`); aac is a clear
//! [`AudioError::UnsupportedOutput`]. Samples are clipped to [-1, 1] and scaled by 32767.
//! See the [`encode`](mod@encode) module for what each format does when streamed.
//!
//! ```
//! use higgs_audio_io::{AudioFormat, StreamEncoder};
//! let format: AudioFormat = "wav".parse()?;
//! let mut enc = StreamEncoder::new(format, 24000)?;
//! let mut body = enc.push(&[0.0; 480])?; // header + first 20 ms
//! body.extend(enc.finish()?);
//! assert_eq!(body.len(), 44 + 960);
//! # Ok::<(), higgs_audio_io::AudioError>(())
//! ```

pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
#[cfg(feature = "opus")]
mod opus_in;
pub mod resample;
pub mod tempo;

pub use decode::{
    decode_bytes, decode_file, duration_seconds, load_bytes, load_file, probe_bytes, AudioHeader,
    DecodeLimits, DecodedAudio,
};
pub use encode::{encode, StreamEncoder};
pub use error::{AudioError, Result};
pub use format::AudioFormat;
pub use resample::{resample, resampled_len};
pub use tempo::{time_stretch, TimeStretch};
