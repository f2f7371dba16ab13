//! Output formats of the speech API (`response_format` in OpenAI's `/v1/audio/speech`).

use crate::error::AudioError;
use std::fmt;
use std::str::FromStr;

/// An output container/codec. Parse it once at the edge (`"mp3".parse()`), then pass the enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// RIFF/WAVE, 16-bit PCM.
    Wav,
    /// Raw 16-bit signed little-endian PCM, no header.
    Pcm,
    /// FLAC, 16-bit.
    Flac,
    /// MPEG-1/2 Layer III (LAME).
    Mp3,
    /// Opus in an Ogg container.
    Opus,
    /// AAC: named so requests parse, but not encodable (see [`AudioFormat::is_supported`]).
    Aac,
}

impl AudioFormat {
    /// Every format, in the order OpenAI documents them plus `pcm`.
    pub const ALL: [AudioFormat; 6] = [
        AudioFormat::Mp3,
        AudioFormat::Opus,
        AudioFormat::Aac,
        AudioFormat::Flac,
        AudioFormat::Wav,
        AudioFormat::Pcm,
    ];

    /// The lower-case API name (`"wav"`, `"mp3"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Pcm => "pcm",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
            AudioFormat::Aac => "aac",
        }
    }

    /// HTTP `Content-Type` of the encoded bytes.
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Pcm => "audio/pcm",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Opus => "audio/ogg",
            AudioFormat::Aac => "audio/aac",
        }
    }

    /// File extension without the dot.
    pub fn file_extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Pcm => "pcm",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
            AudioFormat::Aac => "aac",
        }
    }

    /// Whether this build can encode the format (AAC never; mp3/opus only with their features).
    pub fn is_supported(self) -> bool {
        match self {
            AudioFormat::Wav | AudioFormat::Pcm | AudioFormat::Flac => true,
            AudioFormat::Mp3 => cfg!(feature = "mp3"),
            AudioFormat::Opus => cfg!(feature = "opus"),
            AudioFormat::Aac => false,
        }
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AudioFormat {
    type Err = AudioError;

    /// Case-insensitive; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        AudioFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| AudioError::UnknownFormat(s.to_owned()))
    }
}
