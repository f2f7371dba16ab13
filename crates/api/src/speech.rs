//! OpenAI `POST /v1/audio/speech` (openai-python `CreateSpeechRequest`) plus the Higgs extras.

use higgs_audio_io::AudioFormat;
use higgs_engine::{GenerateRequest, Prompting};
use higgs_text::{ChunkConfig, VoiceSpec};
use serde::Deserialize;

use crate::{ApiError, ErrorKind, Limits, SamplingExtras, OPENAI_VOICES};

/// `voice`: a name, or `{"id": "..."}` (newer OpenAI spec).
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum VoiceParam {
    Name(String),
    Id { id: String },
}

impl VoiceParam {
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) => n,
            Self::Id { id } => id,
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct SpeechRequest {
    /// Any model name is accepted (the server serves one model).
    pub model: String,
    /// The text to speak.
    pub input: String,
    /// A voice of the library, a comma list for `[SPEAKERn]` dialogue, or an OpenAI built-in name
    /// (= no reference voice unless the library has one of that name).
    pub voice: VoiceParam,
    /// Becomes the scene/tone description of the prompt.
    pub instructions: Option<String>,
    /// mp3 (default) | opus | aac | flac | wav | pcm.
    pub response_format: Option<String>,
    /// Tempo, 0.25–4.0 (default 1): the generated audio is time-stretched with its pitch kept
    /// (WSOLA), so 2 is twice as fast and half as long. Out of range is a 400.
    #[schema(minimum = 0.25, maximum = 4.0)]
    pub speed: Option<f32>,
    /// audio (default: the audio bytes as the body) | sse.
    pub stream_format: Option<String>,
    /// Higgs extra (with `stream_format: "audio"`): `true` sends the body chunked as the audio is
    /// generated, `false` sends one whole file with its true sizes and `Content-Length` once the
    /// audio is complete. Default: streamed for pcm, mp3 and opus (formats whose headers hold no
    /// length), whole for wav and flac (whose headers do: streamed, their sizes are "unknown").
    pub stream: Option<bool>,
    /// Accepted, ignored (an end-user id as on OpenAI's other endpoints; not logged).
    pub user: Option<String>,
    #[serde(flatten)]
    pub sampling: SamplingExtras,
    /// Unknown fields are refused (typo protection); serde cannot combine `deny_unknown_fields`
    /// with `flatten`, so they are collected here and checked.
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

/// How the audio goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// The encoded bytes as a chunked body, sent as they are encoded (a streamed WAV carries
    /// `0xFFFFFFFF` sizes, a streamed FLAC no length).
    Audio,
    /// One whole file with true sizes in its header, sent with `Content-Length` once generated.
    File,
    /// `speech.audio.delta` / `speech.audio.done` server-sent events.
    Sse,
}

impl StreamFormat {
    /// Whether `stream_format: "audio"` streams `format` unless the request says (`stream`):
    /// yes for the formats whose headers hold no length.
    pub fn streams_by_default(format: AudioFormat) -> bool {
        !matches!(format, AudioFormat::Wav | AudioFormat::Flac)
    }
}

/// A validated speech request.
#[derive(Debug, Clone)]
pub struct SpeechJob {
    pub request: GenerateRequest,
    pub format: AudioFormat,
    pub stream: StreamFormat,
    pub voice_clone: bool,
    /// The tempo to stretch the generated audio to, in [0.25, 4.0]; exactly 1.0 = unchanged.
    pub speed: f32,
}

/// Parses a voice field into reference specs: library names (checked by the engine), OpenAI
/// built-ins without a library voice → none.
pub fn voice_specs(voice: &str, library: &[String]) -> Vec<VoiceSpec> {
    let voice = voice.trim();
    if voice.is_empty() || (OPENAI_VOICES.contains(&voice) && !library.iter().any(|v| v == voice)) {
        return Vec::new();
    }
    VoiceSpec::parse_list(voice)
        .into_iter()
        .map(|v| match v {
            VoiceSpec::Reference(n) => VoiceSpec::Reference(n.trim().to_string()),
            p => p,
        })
        .collect()
}

pub fn parse_format(s: Option<&str>, default: AudioFormat) -> Result<AudioFormat, ApiError> {
    let f = match s {
        None => return Ok(default),
        Some(s) => s
            .parse::<AudioFormat>()
            .map_err(|e| ApiError::invalid("response_format", e.to_string()))?,
    };
    if !f.is_supported() {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("response_format `{f}` is not supported by this server (no good encoder is bundled); use mp3, opus, flac, wav or pcm"),
        )
        .with_suggestions(vec!["mp3".into(), "opus".into(), "flac".into(), "wav".into(), "pcm".into()]));
    }
    Ok(f)
}

impl SpeechRequest {
    pub fn validate(&self, limits: &Limits, library: &[String]) -> Result<SpeechJob, ApiError> {
        crate::reject_unknown(&self.unknown)?;
        limits.check_text("input", &self.input)?;
        if let Some(i) = &self.instructions {
            if i.chars().count() > limits.max_input_chars {
                return Err(ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    "`instructions` is too long",
                ));
            }
        }
        let speed = self.speed.unwrap_or(1.0);
        if !speed.is_finite()
            || !(higgs_audio_io::tempo::MIN_SPEED..=higgs_audio_io::tempo::MAX_SPEED)
                .contains(&speed)
        {
            return Err(ApiError::invalid(
                "speed",
                format!("must be in [0.25, 4.0], got {speed}"),
            ));
        }
        // A hair from 1 (a float sent as 1.0000001) is 1: no stretch at all.
        let speed = if (speed - 1.0).abs() <= 1e-6 {
            1.0
        } else {
            speed
        };
        let format = parse_format(self.response_format.as_deref(), AudioFormat::Mp3)?;
        let stream = match self.stream_format.as_deref() {
            None | Some("audio") => {
                if self
                    .stream
                    .unwrap_or_else(|| StreamFormat::streams_by_default(format))
                {
                    StreamFormat::Audio
                } else {
                    StreamFormat::File
                }
            }
            Some("sse") if self.stream == Some(false) => {
                return Err(ApiError::invalid(
                    "stream",
                    "= false contradicts `stream_format: \"sse\"` (events are always streamed); use `stream_format: \"audio\"` for one whole file".into(),
                ))
            }
            Some("sse") => StreamFormat::Sse,
            Some(o) => {
                return Err(ApiError::invalid(
                    "stream_format",
                    format!("must be `audio` or `sse`, got `{o}`"),
                ))
            }
        };
        let voices = voice_specs(self.voice.name(), library);
        let voice_clone = voices.iter().any(|v| matches!(v, VoiceSpec::Reference(_)));
        let params = self.sampling.to_params(limits)?;
        let scene = self
            .instructions
            .as_ref()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Ok(SpeechJob {
            request: GenerateRequest {
                prompting: Prompting::Script {
                    transcript: self.input.clone(),
                    voices,
                    uploads: Vec::new(),
                    scene_prompt: scene,
                    ref_audio_in_system_message: false,
                    chunking: ChunkConfig::default(),
                    chunk_buffer_size: None,
                },
                params,
                force_audio: true,
                timeout: None,
                request_id: None,
            },
            format,
            stream,
            voice_clone,
            speed,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(extra: &str) -> Result<SpeechRequest, serde_json::Error> {
        serde_json::from_str(&format!(
            r#"{{"model":"tts-1","input":"Hello","voice":"alloy"{extra}}}"#
        ))
    }

    #[test]
    fn defaults_and_builtin_voices() {
        let j = req("").unwrap().validate(&Limits::default(), &[]).unwrap();
        assert_eq!(j.format, AudioFormat::Mp3);
        assert_eq!(j.stream, StreamFormat::Audio, "mp3 streams");
        assert!(!j.voice_clone);
        let j = req("")
            .unwrap()
            .validate(&Limits::default(), &["alloy".into()])
            .unwrap();
        assert!(
            j.voice_clone,
            "a library voice named like a built-in is used"
        );
    }

    /// Every field of OpenAI's `CreateSpeechRequest` (plus `user`) is accepted and what applies
    /// is honoured.
    #[test]
    fn every_openai_field_is_accepted() {
        let j = req(r#","instructions":" Calm and slow. ","response_format":"flac","speed":1.0,"stream_format":"sse","user":"u-1""#)
            .unwrap()
            .validate(&Limits::default(), &[])
            .unwrap();
        assert_eq!(j.format, AudioFormat::Flac);
        assert_eq!(j.stream, StreamFormat::Sse);
        let Prompting::Script { scene_prompt, .. } = &j.request.prompting else {
            panic!("script prompting")
        };
        assert_eq!(scene_prompt.as_deref(), Some("Calm and slow."));
    }

    #[test]
    fn wav_and_flac_are_whole_files_unless_streaming_is_asked_for() {
        let mode = |extra: &str| {
            req(extra)
                .unwrap()
                .validate(&Limits::default(), &[])
                .map(|j| j.stream)
        };
        for f in ["wav", "flac"] {
            assert_eq!(
                mode(&format!(r#","response_format":"{f}""#)),
                Ok(StreamFormat::File)
            );
            assert_eq!(
                mode(&format!(
                    r#","response_format":"{f}","stream_format":"audio""#
                )),
                Ok(StreamFormat::File)
            );
            assert_eq!(
                mode(&format!(r#","response_format":"{f}","stream":true"#)),
                Ok(StreamFormat::Audio)
            );
        }
        for f in ["pcm", "mp3", "opus"] {
            assert_eq!(
                mode(&format!(r#","response_format":"{f}""#)),
                Ok(StreamFormat::Audio)
            );
            assert_eq!(
                mode(&format!(r#","response_format":"{f}","stream":false"#)),
                Ok(StreamFormat::File)
            );
        }
        assert_eq!(
            mode(r#","response_format":"wav","stream_format":"sse","stream":true"#),
            Ok(StreamFormat::Sse)
        );
        let e = mode(r#","stream_format":"sse","stream":false"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream"));
    }

    /// OpenAI's range is honoured (the server time-stretches); outside it is a 400 naming
    /// `speed` and the range.
    #[test]
    fn speed_in_range_is_honoured_outside_refused() {
        let speed = |extra: &str| {
            req(extra)
                .unwrap()
                .validate(&Limits::default(), &[])
                .map(|j| j.speed)
        };
        assert_eq!(speed(""), Ok(1.0));
        assert_eq!(speed(r#","speed":1.0000001"#), Ok(1.0));
        for (v, want) in [
            ("0.25", 0.25),
            ("0.5", 0.5),
            ("1.5", 1.5),
            ("2", 2.0),
            ("4.0", 4.0),
        ] {
            assert_eq!(speed(&format!(r#","speed":{v}"#)), Ok(want), "{v}");
        }
        for v in ["0.2", "4.5", "5.0", "0", "-1"] {
            let e = speed(&format!(r#","speed":{v}"#)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("speed"), "{v}");
            assert!(e.message.contains("[0.25, 4.0]"), "{v}: {}", e.message);
            assert_eq!(e.kind, ErrorKind::BadRequest, "{v}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let e = req(r#","speed":5.0"#)
            .unwrap()
            .validate(&Limits::default(), &[])
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("speed"));
        let e = req(r#","response_format":"ogg-vorbis""#)
            .unwrap()
            .validate(&Limits::default(), &[])
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("response_format"));
        let e = req(r#","response_format":"aac""#)
            .unwrap()
            .validate(&Limits::default(), &[])
            .unwrap_err();
        assert!(e.message.contains("aac"));
        let e = req(r#","temprature":1"#)
            .unwrap()
            .validate(&Limits::default(), &[])
            .unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("temprature"),
            "unknown fields are refused"
        );
        let long = Limits {
            max_input_chars: 3,
            ..Default::default()
        };
        assert_eq!(
            req("").unwrap().validate(&long, &[]).unwrap_err().kind,
            ErrorKind::PayloadTooLarge
        );
    }
}
