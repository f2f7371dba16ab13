//! Wire types of higgs-serve's front doors and their validation into engine requests. The HTTP
//! server and the RunPod worker share these, so both speak exactly the same schemas and errors.
//!
//! - [`speech`]: OpenAI `POST /v1/audio/speech` (+ Higgs sampling extras).
//! - [`chat`]: OpenAI `POST /v1/chat/completions` with `modalities: ["text","audio"]`.
//! - [`generate`]: the native `/generate` API of the Python RunPod handler this project replaces.
//! - [`error`]: one error type with a stable `error_type` and an HTTP status per kind.

pub mod chat;
pub mod error;
pub mod generate;
pub mod health;
pub mod limits;
pub mod reference;
pub mod speech;
pub mod suggest;

pub use error::{ApiError, ErrorBody, ErrorKind};
pub use limits::Limits;
pub use reference::PendingAudio;

/// Names of OpenAI's built-in voices. Unless the voice library has a voice of that name, they mean
/// "no reference voice: let the model choose" (so stock OpenAI clients work unchanged).
pub const OPENAI_VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];

/// Higgs sampling controls shared by every front door (all optional; defaults of the reference).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct SamplingExtras {
    /// 0 = greedy. Default 1.0 (speech) as `examples/generation.py`.
    pub temperature: Option<f32>,
    /// 0 disables top-k. Default 50.
    pub top_k: Option<usize>,
    /// Default 0.95.
    pub top_p: Option<f32>,
    /// Repetition-aware sampling window; 0 disables. Default 7.
    pub ras_win_len: Option<usize>,
    /// Default 2.
    pub ras_win_max_num_repeat: Option<usize>,
    pub seed: Option<u64>,
    /// Forward steps per chunk (text tokens + audio frames, 25 frames per second). Default 2048.
    pub max_new_tokens: Option<usize>,
}

impl SamplingExtras {
    pub fn to_params(&self, limits: &Limits) -> Result<higgs_engine::GenerationParams, ApiError> {
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=10.0).contains(&temperature) || !temperature.is_finite() {
            return Err(ApiError::invalid(
                "temperature",
                format!("must be in [0, 10], got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(0.95);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("must be in (0, 1], got {top_p}"),
            ));
        }
        let max_new_tokens = self.max_new_tokens.unwrap_or(limits.default_max_new_tokens);
        if max_new_tokens == 0 || max_new_tokens > limits.max_new_tokens {
            return Err(ApiError::invalid(
                "max_new_tokens",
                format!(
                    "must be in [1, {}], got {max_new_tokens}",
                    limits.max_new_tokens
                ),
            ));
        }
        let max_repeat = self.ras_win_max_num_repeat.unwrap_or(2);
        if max_repeat == 0 {
            return Err(ApiError::invalid(
                "ras_win_max_num_repeat",
                "must be >= 1".into(),
            ));
        }
        Ok(higgs_engine::GenerationParams {
            sampling: higgs_engine::SamplingParams {
                temperature,
                top_k: Some(self.top_k.unwrap_or(50)),
                top_p,
            },
            ras: higgs_engine::RasParams {
                win_len: self.ras_win_len.unwrap_or(7),
                max_repeat,
            },
            max_new_tokens,
            seed: self.seed,
            ignore_eos: false,
        })
    }
}

/// Decodes base64 (standard or URL-safe, with or without padding, optional `data:...;base64,` prefix).
pub fn decode_base64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine;
    let s = match s.find(";base64,") {
        Some(i) if s.starts_with("data:") => &s[i + 8..],
        _ => s,
    };
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&s))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&s))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&s))
        .map_err(|e| ApiError::invalid(field, format!("is not valid base64: {e}")))
}

/// Refuses fields a request type does not know (collected by a flattened map).
pub fn reject_unknown(
    unknown: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), ApiError> {
    match unknown.keys().next() {
        None => Ok(()),
        Some(k) => Err(ApiError::invalid(
            k,
            "is not a known field of this request (check its spelling)".into(),
        )),
    }
}
