//! The health report, one shape on every door: `GET /health`, a `/generate` body or RunPod job
//! `{"health_check": true}`. The first four fields are the seed RunPod handler's
//! (`status: "healthy"`, `timestamp`, `model_info`, `voice_suggestions`); the rest is higgs-serve's.

use serde::Serialize;

/// `status` of a ready service (the seed handler's word).
pub const HEALTHY: &str = "healthy";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy` once the engine has warmed up; `loading` while it warms up (requests sent
    /// meanwhile wait in its queue); `stopping` while it shuts down or after a fatal error.
    pub status: String,
    /// When the report was made: seconds since the Unix epoch (Python's `time.time()`).
    pub timestamp: f64,
    pub model_info: ModelInfo,
    /// Library voices (name and what the recording says), at most
    /// [`Health::MAX_VOICE_SUGGESTIONS`]; `voices_available` has every name.
    pub voice_suggestions: Vec<VoiceSuggestion>,
    /// The served model name (`/v1/models`).
    pub model: String,
    pub device: String,
    /// Output sample rate in Hz.
    pub sample_rate: usize,
    /// Every library voice name, sorted.
    pub voices_available: Vec<String>,
    pub queue: QueueInfo,
    pub memory: MemoryInfo,
}

impl Health {
    /// Voices listed in `voice_suggestions`.
    pub const MAX_VOICE_SUGGESTIONS: usize = 16;

    /// Whether the report says the service takes requests.
    pub fn is_healthy(&self) -> bool {
        self.status == HEALTHY
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// Where the model weights were loaded from.
    pub model_path: String,
    pub device: String,
    /// True once the model is loaded and warmed up (the engine runs requests).
    pub models_loaded: bool,
    /// Number of voices in the library.
    pub voice_prompts_available: usize,
    /// The engine's description of the model (architecture, dtype, codebooks).
    pub description: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VoiceSuggestion {
    pub name: String,
    /// What the reference recording says (its transcript, shortened).
    pub description: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueInfo {
    pub waiting: usize,
    pub running: usize,
    pub slots: usize,
    pub kv_positions_used: usize,
    pub kv_positions_total: usize,
    pub requests_finished: u64,
    pub requests_failed: u64,
    pub requests_cancelled: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemoryInfo {
    /// Resident memory of the process, MiB.
    pub rss_mb: f64,
}
