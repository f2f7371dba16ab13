//! `POST /generate`: the native API of the Python RunPod handler (same fields; failures are
//! `success: false` with the error and suggestions, and the matching HTTP status). The job itself
//! lives in [`higgs_service::generate`], shared with the RunPod worker. The body may be the flat
//! fields or the RunPod job envelope `{"input": {...}}`; `health_check: true` answers the health
//! report (the same as `GET /health`, with its status).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use higgs_api::generate::{GenerateBody, GenerateInput, GenerateResponse};
use higgs_api::health::Health;
use higgs_api::ApiError;
use higgs_service::{run_generate, GenerateOptions};
use serde::Serialize;

use crate::error::{status_of, AppJson};
use crate::request_id::ReqId;
use crate::AppState;

/// A failure in the `/generate` shape: internal details scrubbed (logged with the request id),
/// `Retry-After` on 429 as the OpenAI routes have it.
fn failure(e: ApiError, request_id: Option<&str>) -> Response {
    let e = higgs_service::errors::for_client(e, request_id);
    let mut r = (status_of(e.kind), axum::Json(GenerateResponse::failure(&e))).into_response();
    if e.kind == higgs_api::ErrorKind::Overloaded {
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    r
}

/// What `/generate` answers: a generation's response, or the health report for a health check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum GenerateAnswer {
    Generated(GenerateResponse),
    Health(Health),
}

#[utoipa::path(post, path = "/generate", request_body = GenerateBody,
    responses((status = 200, body = GenerateAnswer, description = "the generated audio, or the health report of a ready server for `health_check: true`"),
              (status = 400, body = GenerateResponse),
              (status = 401, body = higgs_api::ErrorBody), (status = 404, body = GenerateResponse),
              (status = 413, body = GenerateResponse), (status = 422, body = GenerateResponse),
              (status = 429, body = GenerateResponse), (status = 500, body = GenerateResponse),
              (status = 503, body = GenerateAnswer, description = "loading or shutting down (a health check answers the health report)")))]
pub async fn generate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    note: crate::AccessNote,
    body: Result<AppJson<serde_json::Value>, crate::HttpError>,
) -> Response {
    let input = body
        .map_err(|e| e.0)
        .and_then(|AppJson(v)| GenerateInput::from_json(v));
    let req = match input {
        Ok(GenerateInput::Generate(req)) => req,
        Ok(GenerateInput::HealthCheck) => {
            let (readiness, h) = state.service.health();
            return (
                crate::routes::health::health_status(readiness),
                axum::Json(GenerateAnswer::Health(h)),
            )
                .into_response();
        }
        Err(e) => return failure(e, request_id.as_deref()),
    };
    let opts = GenerateOptions {
        request_id: request_id.clone(),
        ..Default::default()
    };
    note.note_ref_audio(req.ref_audio.as_deref(), &state.service.voice_names());
    match run_generate(&state.service, &req, opts).await {
        Ok(resp) => {
            note.add_audio_seconds(resp.duration_seconds.unwrap_or(0.0));
            axum::Json(GenerateAnswer::Generated(resp)).into_response()
        }
        Err(e) => failure(e, request_id.as_deref()),
    }
}
