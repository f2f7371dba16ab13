//! The health report, one shape on every door: `GET /health`, a `/generate` body or RunPod job
//! `{"health_check": true}`. The first four fields are the seed RunPod handler's
//! (`status: "healthy"`, `timestamp`, `model_info`, `voice_suggestions`); the rest is higgs-serve's.

use serde::Serialize;

/// `status` of a ready service (the seed handler's word).
pub const HEALTHY: &str = "healthy";
/// `status` of a service that serves with some engines failed.
pub const DEGRADED: &str = "degraded";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy` once an engine has warmed up and none failed; `degraded` while at least one
    /// serves and at least one failed (out of rotation; see `engines`); `loading` while none
    /// serves yet (requests sent meanwhile wait in a queue); `unhealthy` when every engine failed;
    /// `stopping` while the service shuts down.
    pub status: String,
    /// When the report was made: seconds since the Unix epoch (Python's `time.time()`).
    pub timestamp: f64,
    pub model_info: ModelInfo,
    /// Library voices (name and what the recording says), at most
    /// [`Health::MAX_VOICE_SUGGESTIONS`]; `voices_available` has every name.
    pub voice_suggestions: Vec<VoiceSuggestion>,
    /// The served model name (`/v1/models`).
    pub model: String,
    /// The devices of every engine, comma-separated.
    pub device: String,
    /// Output sample rate in Hz.
    pub sample_rate: usize,
    /// Every library voice name, sorted.
    pub voices_available: Vec<String>,
    /// Every engine's queue added up.
    pub queue: QueueInfo,
    pub memory: MemoryInfo,
    /// Each engine (one per device), in `--devices` order.
    pub engines: Vec<EngineHealth>,
}

/// One engine of the service.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EngineHealth {
    /// Its index, the `engine` label of its metrics.
    pub engine: usize,
    pub device: String,
    /// `serving`, `loading` (warming up), `failed` (out of rotation) or `stopping`.
    pub status: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub queue: QueueInfo,
    /// Engine steps whose forward or sampling failed.
    pub step_failures: u64,
}

impl Health {
    /// Voices listed in `voice_suggestions`.
    pub const MAX_VOICE_SUGGESTIONS: usize = 16;

    /// Whether the report says the service takes requests (`healthy` or `degraded`).
    pub fn is_healthy(&self) -> bool {
        self.status == HEALTHY || self.status == DEGRADED
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
