//! OpenAI `POST /v1/chat/completions` with `modalities: ["text","audio"]`: messages (system / user /
//! assistant, text and `input_audio` parts as voice references) → one serve-engine style generation.

use higgs_audio_io::AudioFormat;
use higgs_engine::{ClipInput, GenerateRequest, Prompting};
use higgs_text::wire::{messages_from_wire, AudioSource, WireMessage};
use higgs_text::AudioRef;
use serde::Deserialize;

use crate::{decode_base64, decode_reference_audio, ApiError, ErrorKind, Limits, SamplingExtras};

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ChatAudioParam {
    /// Accepted for compatibility; voice cloning is done with `input_audio` in the messages.
    pub voice: Option<String>,
    /// wav (default) | mp3 | flac | opus | pcm16 | pcm.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    /// OpenAI chat messages: `content` a string or parts (`text`, `input_audio`).
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<serde_json::Value>,
    pub modalities: Option<Vec<String>>,
    pub audio: Option<ChatAudioParam>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Alias of `max_new_tokens`.
    pub max_completion_tokens: Option<usize>,
    pub max_tokens: Option<usize>,
    /// Accepted; generation stops at `<|eot_id|>` / `<|end_of_text|>` as the reference.
    #[schema(value_type = Option<Object>)]
    pub stop: Option<serde_json::Value>,
    pub n: Option<usize>,
    #[serde(flatten)]
    pub sampling: SamplingExtras,
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct ChatJob {
    pub request: GenerateRequest,
    /// Container of `message.audio.data` (non-streaming); streaming deltas are raw PCM16.
    pub format: AudioFormat,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatRequest {
    /// `rate`: the codec sample rate reference audio is decoded to.
    pub fn validate(&self, limits: &Limits, rate: u32) -> Result<ChatJob, ApiError> {
        crate::reject_unknown(&self.unknown)?;
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "must be 1".into()));
        }
        if let Some(m) = &self.modalities {
            if !m.iter().any(|x| x == "audio") {
                return Err(ApiError::invalid(
                    "modalities",
                    "must include \"audio\": this server generates speech".into(),
                ));
            }
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "is empty".into()));
        }
        let wire: Vec<WireMessage> = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::from_value(m.clone()).map_err(|e| {
                    ApiError::invalid(
                        &format!("messages[{i}]"),
                        format!("is not a chat message: {e}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let mut clips: Vec<ClipInput> = Vec::new();
        let mut err: Option<ApiError> = None;
        let mut chars = 0usize;
        let messages = messages_from_wire(&wire, |site, src| {
            let field = format!("messages[{}]", site.message);
            let r = match src {
                AudioSource::Base64 { data, .. } => decode_base64(&field, data).and_then(|b| decode_reference_audio(&field, &b, rate, limits)),
                AudioSource::Url(u) => Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("`{field}`: audio URLs ({u:.60}) are not fetched by this server (SSRF protection); send the audio as base64 `input_audio`"),
                )),
            };
            match r {
                Ok(samples) => {
                    clips.push(ClipInput::Samples(samples));
                    Ok(AudioRef(clips.len() - 1))
                }
                Err(e) => {
                    err.get_or_insert(e);
                    Err(higgs_text::TextError::InvalidMessage("bad audio".into()))
                }
            }
        })
        .map_err(|e| err.take().unwrap_or_else(|| ApiError::new(ErrorKind::BadRequest, e.to_string())))?;
        for m in &messages {
            for c in &m.content {
                if let higgs_text::Content::Text(t) = c {
                    chars += t.chars().count();
                }
            }
        }
        if chars > limits.max_input_chars {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "messages hold {chars} characters; the limit is {}",
                    limits.max_input_chars
                ),
            ));
        }
        if clips.len() > limits.max_reference_clips {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "{} audio parts; the limit is {}",
                    clips.len(),
                    limits.max_reference_clips
                ),
            ));
        }
        let mut sampling = self.sampling.clone();
        sampling.max_new_tokens = sampling
            .max_new_tokens
            .or(self.max_completion_tokens)
            .or(self.max_tokens);
        let params = sampling.to_params(limits)?;
        let fmt = self.audio.as_ref().and_then(|a| a.format.clone());
        let format = match fmt.as_deref() {
            Some("pcm16") => AudioFormat::Pcm,
            other => crate::speech::parse_format(other, AudioFormat::Wav)?,
        };
        Ok(ChatJob {
            request: GenerateRequest {
                prompting: Prompting::Messages { messages, clips },
                params,
                force_audio: true,
                timeout: None,
                request_id: None,
            },
            format,
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }
}
