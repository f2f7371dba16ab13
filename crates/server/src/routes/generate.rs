//! `POST /generate`: the native API of the Python RunPod handler (same fields; failures are
//! `success: false` with the error and suggestions, and the matching HTTP status).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use higgs_api::generate::{
    GenerateMetadata, GenerateRequestWire, GenerateResponse, GenerationParameters,
};
use higgs_api::ApiError;
use higgs_engine::Prompting;

use crate::error::AppJson;
use crate::{audio, AppState};

fn failure(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(GenerateResponse::failure(&e))).into_response()
}

#[utoipa::path(post, path = "/generate", request_body = GenerateRequestWire,
    responses((status = 200, body = GenerateResponse), (status = 400, body = GenerateResponse),
              (status = 404, body = GenerateResponse), (status = 429, body = GenerateResponse)))]
pub async fn generate(
    State(state): State<AppState>,
    body: Result<AppJson<GenerateRequestWire>, crate::HttpError>,
) -> Response {
    let AppJson(req) = match body {
        Ok(b) => b,
        Err(e) => return failure(e.0),
    };
    let t0 = std::time::Instant::now();
    let rate = state.engine.sample_rate() as u32;
    let job = match req.validate(&state.config.limits, rate) {
        Ok(j) => j,
        Err(e) => return failure(e),
    };
    if job.s3_bucket.is_some() || job.s3_key.is_some() {
        return failure(ApiError::new(
            higgs_api::ErrorKind::InvalidRequest,
            "S3 upload (`s3_bucket`/`s3_key`) is not configured on this server; omit them to receive `audio_base64`",
        ));
    }
    let params = job.request.params.clone();
    let chunk_method = match &job.request.prompting {
        Prompting::Script { chunking, .. } => format!("{:?}", chunking.method).to_lowercase(),
        Prompting::Messages { .. } => "none".into(),
    };
    let collected = match audio::start(&state, job.request).await {
        Ok((s, early)) => audio::collect(&state, s, early).await,
        Err(e) => Err(e),
    };
    let c = match collected {
        Ok(c) => c,
        Err(e) => return failure(e),
    };
    let bytes = match audio::encode(job.format, &c.samples, rate) {
        Ok(b) => b,
        Err(e) => return failure(e),
    };
    let resp = GenerateResponse {
        success: true,
        audio_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        output_format: Some(job.format.to_string()),
        duration_seconds: Some(c.samples.len() as f64 / rate as f64),
        sample_rate: Some(rate),
        text_output: Some(c.text.clone()),
        metadata: Some(GenerateMetadata {
            model_used: state.config.model_name.clone(),
            voice_clone: job.voice_clone,
            generation_parameters: GenerationParameters {
                temperature: params.sampling.temperature,
                top_k: params.sampling.top_k,
                top_p: params.sampling.top_p,
                max_new_tokens: params.max_new_tokens,
                ras_win_len: params.ras.win_len,
                ras_win_max_num_repeat: params.ras.max_repeat,
                seed: params.seed,
                chunk_method,
                generation_time: t0.elapsed().as_secs_f64(),
                chunks_processed: c.usage.chunks,
            },
        }),
        ..Default::default()
    };
    axum::Json(resp).into_response()
}
