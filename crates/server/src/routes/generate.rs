//! `POST /generate`: the native API of the Python RunPod handler (same fields; failures are
//! `success: false` with the error and suggestions, and the matching HTTP status). The job itself
//! lives in [`higgs_service::generate`], shared with the RunPod worker.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use higgs_api::generate::{GenerateRequestWire, GenerateResponse};
use higgs_api::ApiError;
use higgs_service::{run_generate, GenerateOptions};

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

#[utoipa::path(post, path = "/generate", request_body = GenerateRequestWire,
    responses((status = 200, body = GenerateResponse), (status = 400, body = GenerateResponse),
              (status = 401, body = higgs_api::ErrorBody), (status = 404, body = GenerateResponse),
              (status = 413, body = GenerateResponse), (status = 422, body = GenerateResponse),
              (status = 429, body = GenerateResponse), (status = 500, body = GenerateResponse),
              (status = 503, body = GenerateResponse)))]
pub async fn generate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    note: crate::AccessNote,
    body: Result<AppJson<GenerateRequestWire>, crate::HttpError>,
) -> Response {
    let AppJson(req) = match body {
        Ok(b) => b,
        Err(e) => return failure(e.0, request_id.as_deref()),
    };
    let opts = GenerateOptions {
        request_id: request_id.clone(),
        ..Default::default()
    };
    note.note_ref_audio(req.ref_audio.as_deref(), &state.service.voice_names());
    match run_generate(&state.service, &req, opts).await {
        Ok(resp) => {
            note.add_audio_seconds(resp.duration_seconds.unwrap_or(0.0));
            axum::Json(resp).into_response()
        }
        Err(e) => failure(e, request_id.as_deref()),
    }
}
