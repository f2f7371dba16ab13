//! higgs-serve's HTTP front door: a thin axum layer over one engine handle.
//!
//! Routes: `POST /v1/audio/speech`, `POST /v1/chat/completions`, `POST /generate`,
//! `GET|POST /v1/audio/voices`, `DELETE /v1/audio/voices/{name}`, `GET /v1/models`, `GET /health`,
//! `GET /ping`, `GET /metrics`, `GET /openapi.json`, and the playground page at `GET /` (assets
//! under `/ui/`). Each request gets one access line (target `higgs_server::access`) and the
//! `higgs_http_*` metrics when its response has been sent (`access_log.rs`). Every error is JSON
//! (`{"error": {"message", "type", "param", "code"}}`) with the status of its kind
//! ([`status_of`]). Every response carries `x-request-id` (the client's, or a new UUID), which
//! also names the request's tracing span and is passed into the engine request.
//!
//! What the RunPod worker shares with this door (state, `/generate`, voices, readiness) lives in
//! `higgs-service`; this crate only adds HTTP.

mod access_log;
mod audio;
mod error;
pub mod net;
mod openapi;
mod request_id;
mod routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use higgs_service::Service;

pub use access_log::{describe_metrics, AccessNote};
pub use error::{status_of, HttpError};
pub use net::{guard_bodies, serve_with, NetConfig};
pub use request_id::REQUEST_ID_HEADER;

/// HTTP-only settings (from the CLI); the rest lives in [`higgs_service::ServiceConfig`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer key required on every route but health, ping and metrics.
    pub api_key: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Connection and body-read limits.
    pub net: NetConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            max_body_bytes: 40 * 1024 * 1024,
            net: NetConfig::default(),
        }
    }
}

/// Shared state of every handler: the service behind both doors, plus what only HTTP needs.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub config: Arc<ServerConfig>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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
        .route(
            "/v1/audio/voices/{name}",
            get(routes::voices::details).delete(routes::voices::remove),
        )
        .route("/v1/models", get(routes::health::models))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::auth::require_key,
        ));
    let router = Router::new()
        .merge(protected)
        .merge(routes::ui::router())
        .route("/health", get(routes::health::health))
        .route("/ping", get(routes::health::ping))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(routes::health::not_found)
        .layer(DefaultBodyLimit::max(max_body));
    let router = net::guard_bodies(router, max_body, state.config.net.body_read_timeout);
    let router = access_log::with_access_log(router);
    request_id::with_request_ids(router).with_state(state)
}

/// Serves `app` on `addr` until ctrl-c / SIGTERM, then lets running requests finish.
pub async fn serve(state: AppState, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(state, listener).await
}

/// [`serve`] on a listener the caller bound (e.g. before loading the weights).
pub async fn serve_on(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let engine = state.service.engine.clone();
    let net = state.config.net.clone();
    serve_with(listener, app(state), &net, async move {
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
