//! higgs-serve's HTTP front door: a thin axum layer over one engine handle.
//!
//! Routes: `POST /v1/audio/speech`, `POST /v1/chat/completions`, `POST /generate`,
//! `GET|POST /v1/audio/voices`, `DELETE /v1/audio/voices/{name}`, `GET /v1/models`, `GET /health`,
//! `GET /ping`, `GET /metrics`, `GET /openapi.json`. Every error is JSON
//! (`{"error": {"message", "type", "param", "code"}}`) with the status of its kind.

mod audio;
mod error;
pub mod jobs;
mod openapi;
mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use higgs_api::Limits;
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::EngineHandle;

pub use error::HttpError;

/// Server settings (from the CLI).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer key required on every route but health, ping and metrics.
    pub api_key: Option<String>,
    pub limits: Limits,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Name reported by `/v1/models` and in responses.
    pub model_name: String,
    /// Per-request deadline (queue time included); `None` = no limit.
    pub request_timeout: Option<std::time::Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            limits: Limits::default(),
            max_body_bytes: 40 * 1024 * 1024,
            model_name: "higgs-audio-v2-generation-3B-base".into(),
            request_timeout: None,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub voices: Option<Arc<VoiceLibrary>>,
    pub config: Arc<ServerConfig>,
    /// False until the model is loaded (`/ping` answers 204 meanwhile).
    pub ready: Arc<AtomicBool>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub device: String,
    /// S3 uploads for `/generate` (configured from AWS_* / BUCKET_* at start-up).
    pub uploader: Option<Arc<higgs_storage::Uploader>>,
}

impl AppState {
    pub fn voice_names(&self) -> Vec<String> {
        self.voices.as_ref().map(|v| v.names()).unwrap_or_default()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.engine.is_stopped()
    }
}

/// The router (tests drive it with `tower::ServiceExt::oneshot`).
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let protected = Router::new()
        .route("/v1/audio/speech", post(routes::speech::speech))
        .route("/v1/chat/completions", post(routes::chat::chat))
        .route("/generate", post(routes::generate::generate))
        .route(
            "/v1/audio/voices",
            get(routes::voices::list).post(routes::voices::create),
        )
        .route("/v1/audio/voices/{name}", delete(routes::voices::remove))
        .route("/v1/models", get(routes::health::models))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::auth::require_key,
        ));
    Router::new()
        .merge(protected)
        .route("/health", get(routes::health::health))
        .route("/ping", get(routes::health::ping))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(routes::health::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app` on `addr` until ctrl-c / SIGTERM, then lets running requests finish.
pub async fn serve(state: AppState, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let engine = state.engine.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing running requests");
            engine.shutdown();
        })
        .await
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
