//! What both front doors share — the HTTP server (`higgs-server`) and the RunPod worker
//! (`higgs-worker`) depend on this crate and on `higgs-api`, never on each other:
//!
//! - [`Service`]: the engine pool (one engine per device behind one admission front), the one
//!   voice library, the uploader and the settings every door needs;
//! - [`Readiness`]: one notion of "ready", taken from the engines (one warmed up, not stopping);
//! - [`health`]: the health report of every door;
//! - [`run`]: submitting a request and collecting its events;
//! - [`generate`]: the native `/generate` job (HTTP route and RunPod job alike);
//! - [`errors`]: what a client may be told (internal details scrubbed, logged with the request id);
//! - [`voices`]: listing, adding and deleting library voices, with their errors as [`ApiError`]s.
//!
//! Nothing here knows HTTP or RunPod: errors are [`ApiError`]s, which each door maps once.

pub mod errors;
pub mod generate;
pub mod health;
pub mod run;
pub mod voices;

use std::sync::Arc;
use std::time::Duration;

use higgs_api::{ApiError, Limits};
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{EnginePool, PoolState};
use higgs_storage::Uploader;

pub use generate::{run_generate, GenerateOptions};
pub use run::Collected;

/// Settings of the service, the same behind every door (from the CLI).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub limits: Limits,
    /// Name reported by `/v1/models`, health and responses.
    pub model_name: String,
    /// Where the model was loaded from, for health reports (empty: the model name is shown).
    pub model_path: String,
    /// Per-request deadline (queue time included); `None` = no limit.
    pub request_timeout: Option<Duration>,
    /// Where uploaded audio is decoded: a bounded number at once, off the async runtime.
    pub decode_pool: DecodePool,
}

/// Decodes of uploaded audio (references, voice uploads) run on tokio's blocking threads, at most
/// `permits` at once; the others wait for a permit (asynchronously), so a burst of expensive
/// uploads neither stalls the async runtime (health, other requests) nor multiplies memory.
#[derive(Debug, Clone)]
pub struct DecodePool {
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
}

impl DecodePool {
    /// Default number of decodes at once.
    pub const DEFAULT_SIZE: usize = 2;

    /// A pool running at most `size` decodes at once (at least 1).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs the blocking `f` on the pool.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let unavailable = || {
            ApiError::new(
                higgs_api::ErrorKind::Unavailable,
                "the server is shutting down; retry on another instance",
            )
        };
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable())?;
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            ApiError::new(
                higgs_api::ErrorKind::Internal,
                format!("audio decode task: {e}"),
            )
        })?
    }
}

impl Default for DecodePool {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SIZE)
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            model_name: "higgs-audio-v2-generation-3B-base".into(),
            model_path: String::new(),
            request_timeout: None,
            decode_pool: DecodePool::default(),
        }
    }
}

/// Whether the service takes requests, from its engines' own states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// No engine has warmed up yet; requests submitted now wait in a queue.
    Loading,
    Ready,
    /// Serving, with at least one engine failed (out of rotation).
    Degraded,
    /// Every engine failed.
    Failed,
    /// Shutting down.
    Stopping,
}

impl Readiness {
    /// From one engine's two flags; stopping wins (a stopped engine may still read as warmed up).
    pub fn from_engine(stopped: bool, warmed_up: bool) -> Self {
        if stopped {
            Self::Stopping
        } else if warmed_up {
            Self::Ready
        } else {
            Self::Loading
        }
    }

    pub fn from_pool(s: PoolState) -> Self {
        match s {
            PoolState::Loading => Self::Loading,
            PoolState::Ready => Self::Ready,
            PoolState::Degraded => Self::Degraded,
            PoolState::Failed => Self::Failed,
            PoolState::Stopping => Self::Stopping,
        }
    }

    /// Requests are run now (degraded included: the engines left serve).
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Ready | Self::Degraded)
    }
}

/// The shared state behind every door. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    /// Every engine of this process (one per device), submitted to as one.
    pub engine: EnginePool,
    /// The voice library, opened once (`None`: no voice directory configured).
    pub voices: Option<Arc<VoiceLibrary>>,
    pub config: Arc<ServiceConfig>,
    /// The devices the engines run on (comma-separated), for health reports.
    pub device: String,
    /// S3 uploads for `/generate` (configured from AWS_* / BUCKET_* at start-up).
    pub uploader: Option<Arc<Uploader>>,
}

impl Service {
    pub fn readiness(&self) -> Readiness {
        Readiness::from_pool(self.engine.state())
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().is_ready()
    }

    /// The engine's output sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.engine.sample_rate() as u32
    }

    /// Every library voice name, sorted (empty without a library).
    pub fn voice_names(&self) -> Vec<String> {
        self.voices.as_ref().map(|v| v.names()).unwrap_or_default()
    }

    /// Decodes a request's reference audio on the decode pool (headers and the per-request
    /// budget are checked before any clip is decoded; see [`higgs_api::PendingAudio::decode`]).
    pub async fn decode_audio(
        &self,
        audio: higgs_api::PendingAudio,
    ) -> Result<Vec<Vec<f32>>, ApiError> {
        if audio.is_empty() {
            return Ok(Vec::new());
        }
        let rate = self.sample_rate();
        let limits = self.config.limits.clone();
        self.config
            .decode_pool
            .run(move || audio.decode(rate, &limits))
            .await
    }

    /// A generation failure as an [`ApiError`], with the library voices as suggestions.
    pub fn generation_error(&self, e: higgs_engine::GenerationError) -> ApiError {
        ApiError::from_generation(e, &self.voice_names())
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;
    use higgs_engine::PoolState;

    #[test]
    fn readiness_follows_the_engine_and_stopping_wins() {
        assert_eq!(Readiness::from_engine(false, false), Readiness::Loading);
        assert_eq!(Readiness::from_engine(false, true), Readiness::Ready);
        assert_eq!(Readiness::from_engine(true, true), Readiness::Stopping);
        assert_eq!(Readiness::from_engine(true, false), Readiness::Stopping);
        assert_eq!(
            Readiness::from_pool(PoolState::Degraded),
            Readiness::Degraded
        );
        assert_eq!(Readiness::from_pool(PoolState::Failed), Readiness::Failed);
        assert!(Readiness::Ready.is_ready());
        assert!(Readiness::Degraded.is_ready());
        assert!(!Readiness::Loading.is_ready());
        assert!(!Readiness::Failed.is_ready());
    }
}
