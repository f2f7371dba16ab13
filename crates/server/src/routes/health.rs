//! Health, readiness, models and metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use higgs_api::{ApiError, ErrorKind};
use higgs_service::Readiness;
use serde::Serialize;

use crate::{status_of, AppState, HttpError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `loading` or `stopping`.
    pub status: String,
    pub model: String,
    pub model_info: String,
    pub device: String,
    pub sample_rate: usize,
    pub voices_available: Vec<String>,
    pub queue: QueueInfo,
    pub memory: MemoryInfo,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueInfo {
    pub waiting: usize,
    pub running: usize,
    pub slots: usize,
    pub kv_positions_used: usize,
    pub kv_positions_total: usize,
    pub requests_finished: u64,
    pub requests_failed: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemoryInfo {
    /// Resident memory of the process, MiB.
    pub rss_mb: f64,
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let service = &state.service;
    let s = service.engine.stats();
    let readiness = service.readiness();
    let h = Health {
        status: readiness.as_str().into(),
        model: service.config.model_name.clone(),
        model_info: service.engine.model_info().to_string(),
        device: service.device.clone(),
        sample_rate: service.engine.sample_rate(),
        voices_available: service.voice_names(),
        queue: QueueInfo {
            waiting: s.queued,
            running: s.running,
            slots: s.slots,
            kv_positions_used: s.kv_positions_used,
            kv_positions_total: s.slots * s.max_seq_len,
            requests_finished: s.requests_finished,
            requests_failed: s.requests_failed,
        },
        memory: MemoryInfo { rss_mb: rss_mb() },
    };
    (health_status(readiness), axum::Json(h)).into_response()
}

/// 200 when ready; 503 while the engine warms up or stops (the status of `ErrorKind::Unavailable`).
fn health_status(r: Readiness) -> StatusCode {
    if r.is_ready() {
        StatusCode::OK
    } else {
        status_of(ErrorKind::Unavailable)
    }
}

/// RunPod load-balancer convention: 200 when ready, 204 while initializing.
#[utoipa::path(get, path = "/ping", responses((status = 200, description = "ready"), (status = 204, description = "initializing")))]
pub async fn ping(State(state): State<AppState>) -> Response {
    if state.service.is_ready() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "healthy"})),
        )
            .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

#[utoipa::path(get, path = "/v1/models", responses((status = 200, description = "model list"), (status = 401, body = higgs_api::ErrorBody)))]
pub async fn models(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"object": "list", "data": [{
        "id": state.service.config.model_name, "object": "model", "created": 0, "owned_by": "higgs-serve"}]}))
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::OK, "").into_response(),
    }
}

pub async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError(ApiError::new(
        ErrorKind::NotFound,
        format!("no route for {uri}; see /openapi.json"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_503_unless_the_engine_is_ready() {
        assert_eq!(health_status(Readiness::Ready), StatusCode::OK);
        assert_eq!(
            health_status(Readiness::Loading),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            health_status(Readiness::Stopping),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
