//! The one error type of this crate. Every message says what was wrong and how to fix it,
//! because most of them end up in front of an API user who uploaded a file.

use std::path::PathBuf;

/// Containers and codecs the reader accepts, as told to users in error messages.
/// (Opus needs the default `opus` feature.)
pub const SUPPORTED_INPUT: &str =
    "wav, flac, mp3, ogg (vorbis, opus), webm/mkv (opus, vorbis, flac), aiff, caf, m4a/mp4 (aac, alac)";

/// Output formats, as told to users in error messages.
pub const SUPPORTED_OUTPUT: &str = "wav, pcm, flac, mp3, opus";

/// Errors of audio decoding, resampling and encoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("empty audio input: 0 bytes received; send a complete audio file ({SUPPORTED_INPUT})")]
    Empty,

    #[error(
        "audio input too large: {size} bytes exceeds the limit of {limit} bytes; \
         send a shorter clip or a compressed format such as mp3 or flac"
    )]
    TooLarge { size: u64, limit: u64 },

    #[error(
        "audio too long: {seconds:.2} s exceeds the limit of {limit:.2} s; \
         trim the recording to at most {limit:.0} s"
    )]
    TooLong { seconds: f64, limit: f64 },

    #[error("unsupported audio format: {detail}; supported: {SUPPORTED_INPUT}")]
    UnsupportedFormat { detail: String },

    #[error("corrupt audio data: {detail}; re-export or re-encode the file and send it again")]
    Corrupt { detail: String },

    #[error(
        "truncated audio: {detail}; the upload or file is incomplete, send the whole file again"
    )]
    Truncated { detail: String },

    #[error("invalid audio stream: {detail}; re-export the file with a normal sample rate (e.g. 24000 or 44100 Hz) and at least one channel")]
    InvalidStream { detail: String },

    #[error("the file has no audio track; send an audio file ({SUPPORTED_INPUT})")]
    NoAudioTrack,

    #[error("cannot read audio file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid sample rate {rate} Hz: {why}")]
    InvalidSampleRate { rate: u32, why: &'static str },

    #[error("resampling from {from} Hz to {to} Hz failed: {detail}")]
    Resample { from: u32, to: u32, detail: String },

    #[error("unknown audio format `{0}`; expected one of: wav, pcm, flac, mp3, opus, aac")]
    UnknownFormat(String),

    #[error("{format} output is not supported: {why}; use one of: {SUPPORTED_OUTPUT}")]
    UnsupportedOutput {
        format: &'static str,
        why: &'static str,
    },

    #[error("{format} encoder failed: {detail}")]
    Encode {
        format: &'static str,
        detail: String,
    },

    #[error(
        "invalid speed {speed}: must be in [0.25, 4.0] (1 = the natural tempo, 2 = twice as fast)"
    )]
    InvalidSpeed { speed: f32 },
}

impl AudioError {
    /// A stable, machine-readable name for JSON error bodies and metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            AudioError::Empty => "audio_empty",
            AudioError::TooLarge { .. } => "audio_too_large",
            AudioError::TooLong { .. } => "audio_too_long",
            AudioError::UnsupportedFormat { .. } => "audio_unsupported_format",
            AudioError::Corrupt { .. } => "audio_corrupt",
            AudioError::Truncated { .. } => "audio_truncated",
            AudioError::InvalidStream { .. } => "audio_invalid_stream",
            AudioError::NoAudioTrack => "audio_no_track",
            AudioError::Io { .. } => "audio_io",
            AudioError::InvalidSampleRate { .. } => "audio_invalid_sample_rate",
            AudioError::Resample { .. } => "audio_resample",
            AudioError::UnknownFormat(_) => "audio_unknown_format",
            AudioError::UnsupportedOutput { .. } => "audio_unsupported_output",
            AudioError::Encode { .. } => "audio_encode",
            AudioError::InvalidSpeed { .. } => "audio_invalid_speed",
        }
    }

    /// True when the error is the caller's input (a 4xx at an HTTP door), false when it is ours
    /// or the machine's (a 5xx).
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            AudioError::Io { .. } | AudioError::Resample { .. } | AudioError::Encode { .. }
        )
    }
}

pub type Result<T, E = AudioError> = std::result::Result<T, E>;
