//! The native `/generate` API of the Python RunPod handler higgs-serve replaces (same request and
//! response fields), also the RunPod job input.

use higgs_audio_io::AudioFormat;
use higgs_engine::{GenerateRequest, Prompting, UploadedVoice};
use higgs_text::{ChunkConfig, ChunkMethod, VoiceSpec};
use serde::{Deserialize, Serialize};

use crate::{decode_base64, ApiError, Limits, PendingAudio, SamplingExtras};

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct GenerateRequestWire {
    /// Text to speak; `[SPEAKERn]` line prefixes for dialogue.
    pub transcript: String,
    /// A voice name, a comma list (one per speaker), `profile:NAME`, or base64 audio (any
    /// container; optionally `data:audio/...;base64,`).
    pub ref_audio: Option<String>,
    /// Transcript of a base64 `ref_audio` (without it the reference goes into the system message).
    pub ref_text: Option<String>,
    /// Scene description; omitted = the reference's quiet-room scene; "" or "empty" = none.
    pub scene_prompt: Option<String>,
    /// none (default) | word | speaker.
    pub chunk_method: Option<String>,
    pub chunk_max_word_num: Option<usize>,
    pub chunk_max_num_turns: Option<usize>,
    pub generation_chunk_buffer_size: Option<usize>,
    /// Put reference voices into the system message.
    pub ref_audio_in_system_message: Option<bool>,
    /// wav (default) | mp3 | flac | opus | pcm.
    pub output_format: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    #[serde(flatten)]
    pub sampling: SamplingExtras,
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A `/generate` body as the RunPod job schema allows it: the flat fields, or the job envelope
/// `{"input": {...}}` (what `runpod.Endpoint.run` sends and the seed handler read).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum GenerateBody {
    /// `{"input": {...}}`: the fields inside `input` (`{"input": {"health_check": true}}` is a
    /// health check).
    Envelope { input: GenerateRequestWire },
    /// The fields at the top level (`{"health_check": true}` is a health check).
    Flat(GenerateRequestWire),
}

/// What a `/generate` body asks for.
#[derive(Debug, Clone)]
pub enum GenerateInput {
    /// `health_check: true` (at the top level or inside `input`): answer the health report.
    HealthCheck,
    Generate(Box<GenerateRequestWire>),
}

/// Keys a job envelope may carry next to `input` (RunPod's job id; the seed's top-level
/// `health_check`).
const ENVELOPE_KEYS: [&str; 3] = ["input", "id", "health_check"];

/// `health_check` as a bool (absent or null = false).
fn health_flag(v: Option<&serde_json::Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::invalid(
            "health_check",
            format!("must be true or false, got {other}"),
        )),
    }
}

impl GenerateInput {
    /// Reads a `/generate` body: the flat fields or the envelope `{"input": {...}}`, either of
    /// which may be a health check (`health_check: true`). Errors name the field at fault.
    pub fn from_json(body: serde_json::Value) -> Result<Self, ApiError> {
        let serde_json::Value::Object(mut top) = body else {
            return Err(ApiError::new(
                crate::ErrorKind::BadRequest,
                "the body must be a JSON object: the /generate fields (\"transcript\", ...) or the job envelope {\"input\": {...}}",
            ));
        };
        let mut fields = match top.remove("input") {
            None => top,
            Some(serde_json::Value::Object(inner)) => {
                if let Some(k) = top.keys().find(|k| !ENVELOPE_KEYS.contains(&k.as_str())) {
                    return Err(ApiError::invalid(
                        k,
                        "is not a field of the job envelope: put the /generate fields inside `input` (s3Config and webhook are RunPod queue fields, served by `higgs-serve runpod`)".into(),
                    ));
                }
                if health_flag(top.get("health_check"))? {
                    return Ok(Self::HealthCheck);
                }
                inner
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    "input",
                    format!("must be a JSON object holding the /generate fields, got {other}"),
                ))
            }
        };
        if health_flag(fields.get("health_check"))? {
            return Ok(Self::HealthCheck);
        }
        fields.remove("health_check");
        serde_json::from_value(serde_json::Value::Object(fields))
            .map(|r| Self::Generate(Box::new(r)))
            .map_err(|e| {
                ApiError::new(
                    crate::ErrorKind::BadRequest,
                    format!(
                        "invalid /generate body: {e}; see the /generate schema (docs/server.md)"
                    ),
                )
            })
    }
}

#[derive(Debug, Clone)]
pub struct GenerateJob {
    pub request: GenerateRequest,
    pub format: AudioFormat,
    pub voice_clone: bool,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    /// A base64 `ref_audio`, size-checked but not decoded: decode it off the async runtime and
    /// hand the samples to [`GenerateJob::attach_audio`] before submitting.
    pub audio: PendingAudio,
}

impl GenerateJob {
    /// Puts the decoded reference (in the order of [`Self::audio`]) into the request's uploads.
    pub fn attach_audio(&mut self, decoded: Vec<Vec<f32>>) {
        if let Prompting::Script { uploads, .. } = &mut self.request.prompting {
            for (u, samples) in uploads.iter_mut().zip(decoded) {
                u.samples = samples;
            }
        }
    }
}

fn looks_like_base64_audio(s: &str) -> bool {
    s.starts_with("data:") || (s.len() > 256 && !s.contains(','))
}

impl GenerateRequestWire {
    /// Validates everything but the reference audio itself (see [`GenerateJob::audio`]).
    pub fn validate(&self, limits: &Limits) -> Result<GenerateJob, ApiError> {
        crate::reject_unknown(&self.unknown)?;
        limits.check_text("transcript", &self.transcript)?;
        let method: ChunkMethod = match self.chunk_method.as_deref() {
            None | Some("") | Some("none") | Some("None") => ChunkMethod::None,
            Some(m) => m.parse().map_err(|e: higgs_text::TextError| {
                ApiError::invalid("chunk_method", e.to_string())
            })?,
        };
        let chunking = ChunkConfig {
            method,
            max_word_num: self.chunk_max_word_num.unwrap_or(200).max(1),
            max_num_turns: self.chunk_max_num_turns.unwrap_or(1),
        };
        let mut uploads = Vec::new();
        let mut audio = PendingAudio::default();
        let mut in_system = self.ref_audio_in_system_message.unwrap_or(false);
        let voices = match self
            .ref_audio
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => Vec::new(),
            Some(r) if looks_like_base64_audio(r) => {
                let bytes = decode_base64("ref_audio", r)?;
                audio.push("ref_audio", bytes, limits)?;
                let transcript = self.ref_text.clone().unwrap_or_default();
                if transcript.trim().is_empty() {
                    // No transcript: the reference conditions the voice from the system message.
                    in_system = true;
                }
                uploads.push(UploadedVoice {
                    name: "uploaded_reference".into(),
                    transcript,
                    samples: Vec::new(),
                });
                vec![VoiceSpec::Reference("uploaded_reference".into())]
            }
            Some(r) => VoiceSpec::parse_list(r)
                .into_iter()
                .map(|v| match v {
                    VoiceSpec::Reference(n) => VoiceSpec::Reference(n.trim().to_string()),
                    p => p,
                })
                .collect(),
        };
        let voice_clone = !voices.is_empty();
        let scene_prompt = match self.scene_prompt.as_deref() {
            None => Some(higgs_text::context::DEFAULT_SCENE_PROMPT.to_string()),
            Some(s) if s.trim().is_empty() || s.trim() == "empty" => None,
            Some(s) => Some(s.trim().to_string()),
        };
        let format = crate::speech::parse_format(self.output_format.as_deref(), AudioFormat::Wav)?;
        Ok(GenerateJob {
            request: GenerateRequest {
                prompting: Prompting::Script {
                    transcript: self.transcript.clone(),
                    voices,
                    uploads,
                    scene_prompt,
                    ref_audio_in_system_message: in_system,
                    chunking,
                    chunk_buffer_size: self.generation_chunk_buffer_size,
                },
                params: self.sampling.to_params(limits)?,
                // The reference CLI lets the model decide to speak; a TTS API always wants audio.
                force_audio: true,
                timeout: None,
                request_id: None,
            },
            format,
            voice_clone,
            s3_bucket: self.s3_bucket.clone(),
            s3_key: self.s3_key.clone(),
            audio,
        })
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GenerationParameters {
    #[serde(serialize_with = "as_decimal")]
    pub temperature: f32,
    pub top_k: Option<usize>,
    #[serde(serialize_with = "as_decimal")]
    pub top_p: f32,
    pub max_new_tokens: usize,
    pub ras_win_len: usize,
    pub ras_win_max_num_repeat: usize,
    pub seed: Option<u64>,
    /// The chunking that ran: the request's, or `word` when the text did not fit the sequence
    /// limit in one piece and was split automatically (`auto_chunked`).
    pub chunk_method: String,
    /// Words per chunk of the `word` method.
    pub chunk_max_word_num: Option<usize>,
    /// The request asked for no chunking and its text was too long for one piece.
    pub auto_chunked: bool,
    /// Earlier chunks dropped from a later chunk's context so that it fit the sequence limit.
    pub context_chunks_dropped: usize,
    /// Seconds from request to complete audio.
    pub generation_time: f64,
    pub chunks_processed: usize,
}

/// An `f32` as the decimal the user wrote (0.3, not 0.30000001192092896): its shortest
/// round-tripping text read back as an `f64`, so also `serde_json::to_value` (the RunPod worker's
/// output) keeps it.
fn as_decimal<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(x.to_string().parse::<f64>().unwrap_or(f64::from(*x)))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GenerateMetadata {
    pub model_used: String,
    pub voice_clone: bool,
    pub generation_parameters: GenerationParameters,
}

/// `/generate` response (success and failure share the shape; `success` tells them apart).
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct GenerateResponse {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<GenerateMetadata>,
    /// Set when the S3 upload failed: the audio is then returned inline in `audio_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub voice_suggestions: Vec<String>,
}

impl GenerateResponse {
    pub fn failure(e: &ApiError) -> Self {
        Self {
            success: false,
            error: Some(e.message.clone()),
            error_type: Some(e.kind.error_type().to_string()),
            voice_suggestions: e.suggestions.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod decimal_tests {
    use super::*;

    #[test]
    fn sampling_values_keep_the_decimal_the_user_sent() {
        let p = GenerationParameters {
            temperature: 0.3,
            top_k: Some(50),
            top_p: 0.95,
            max_new_tokens: 10,
            ras_win_len: 7,
            ras_win_max_num_repeat: 2,
            seed: None,
            chunk_method: "none".into(),
            chunk_max_word_num: None,
            auto_chunked: false,
            context_chunks_dropped: 0,
            generation_time: 0.5,
            chunks_processed: 1,
        };
        // to_value is what the worker does before posting its output.
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["temperature"].to_string(), "0.3");
        assert_eq!(v["top_p"].to_string(), "0.95");
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""temperature":0.3,"#), "{text}");
    }
}
