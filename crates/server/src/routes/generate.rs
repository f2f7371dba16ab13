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
              (status = 401, body = higgs_api::ErrorBody), (status = 404, body = GenerateResponse),
              (status = 413, body = GenerateResponse), (status = 422, body = GenerateResponse),
              (status = 429, body = GenerateResponse), (status = 500, body = GenerateResponse),
              (status = 503, body = GenerateResponse)))]
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
    // Upload when S3 is configured (or asked for); on failure the audio comes back inline and
    // `upload_error` says why, so nothing generated is lost.
    let wants_upload = state.uploader.is_some() || job.s3_bucket.is_some() || job.s3_key.is_some();
    let (mut audio_url, mut s3_uri, mut upload_error) = (None, None, None);
    if wants_upload {
        match &state.uploader {
            None => {
                upload_error = Some(
                    "S3 is not configured on this server (set BUCKET_ENDPOINT_URL/BUCKET_ACCESS_KEY_ID/BUCKET_SECRET_ACCESS_KEY or AWS_*); the audio is inline".to_string(),
                )
            }
            Some(up) => match up.put(job.s3_bucket.as_deref(), job.s3_key.as_deref(), bytes.clone(), job.format.content_type()).await {
                Ok(u) => {
                    audio_url = Some(u.url);
                    s3_uri = Some(u.s3_uri);
                }
                Err(e) => {
                    tracing::warn!("S3 upload failed: {e}");
                    upload_error = Some(format!("S3 upload failed ({e}); the audio is returned inline"));
                }
            },
        }
    }
    let inline = audio_url.is_none();
    let resp = GenerateResponse {
        success: true,
        audio_url,
        s3_uri,
        upload_error,
        audio_base64: inline.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes)),
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
