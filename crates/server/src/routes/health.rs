//! Health, readiness, models and metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use higgs_api::health::Health;
use higgs_api::{ApiError, ErrorKind};
use higgs_service::Readiness;

use crate::{status_of, AppState, HttpError};

/// The health report (`higgs_api::health::Health`, the same on every door): 200 once an engine
/// has warmed up (also while others failed: `degraded`), 503 while none serves.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, body = Health, description = "ready: `status` is `healthy`, or `degraded` when an engine failed and the others serve"),
    (status = 503, body = Health, description = "not ready: `status` is `loading` (warming up), `unhealthy` (every engine failed) or `stopping`")))]
pub async fn health(State(state): State<AppState>) -> Response {
    let (readiness, h) = state.service.health();
    (health_status(readiness), axum::Json(h)).into_response()
}

/// 200 when an engine serves; 503 while none does (the status of `ErrorKind::Unavailable`).
pub(crate) fn health_status(r: Readiness) -> StatusCode {
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
        Some(h) => {
            // The pool's gauges (engine states, totals) are read now, not on each change.
            state.service.engine.record_metrics();
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                h.render(),
            )
                .into_response()
        }
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
        assert_eq!(health_status(Readiness::Degraded), StatusCode::OK);
        assert_eq!(
            health_status(Readiness::Failed),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
