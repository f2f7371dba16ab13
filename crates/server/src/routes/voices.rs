//! Voice library routes: list, upload (audio + transcript, validated and persisted), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use higgs_api::{ApiError, ErrorKind};
use higgs_engine::voices::VoiceError;
use serde::{Deserialize, Serialize};

use crate::error::AppJson;
use crate::{AppState, HttpError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VoiceEntry {
    pub name: String,
    /// What the reference recording says.
    pub description: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VoiceList {
    pub object: String,
    pub data: Vec<VoiceEntry>,
    /// Plain names (the Higgs vLLM server's response shape).
    pub voices: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVoice {
    /// Letters, digits, `_` or `-` (1-64).
    pub name: String,
    /// Exact words spoken in the recording.
    pub transcript: String,
    /// The recording, base64 (wav/flac/mp3/ogg; any rate; mono or stereo).
    pub audio_base64: String,
}

fn library(state: &AppState) -> Result<&higgs_engine::voices::VoiceLibrary, HttpError> {
    state.voices.as_deref().ok_or_else(|| {
        HttpError(ApiError::new(
            ErrorKind::NotFound,
            "no voice directory is configured (start the server with --voices DIR)",
        ))
    })
}

fn map(e: VoiceError, state: &AppState) -> HttpError {
    let kind = match e {
        VoiceError::InvalidName { .. } => ErrorKind::BadRequest,
        VoiceError::Unknown { .. } => ErrorKind::NotFound,
        VoiceError::Exists { .. } | VoiceError::EmptyTranscript { .. } => ErrorKind::InvalidRequest,
        VoiceError::Audio { .. } | VoiceError::Codec { .. } | VoiceError::NoTranscript { .. } => {
            ErrorKind::InvalidRequest
        }
        VoiceError::Dir { .. } | VoiceError::Io { .. } => ErrorKind::Internal,
    };
    let suggestions = if kind == ErrorKind::NotFound {
        state.voice_names()
    } else {
        Vec::new()
    };
    HttpError(ApiError::new(kind, e.to_string()).with_suggestions(suggestions))
}

#[utoipa::path(get, path = "/v1/audio/voices", responses((status = 200, body = VoiceList), (status = 401, body = higgs_api::ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<VoiceList>, HttpError> {
    let entries: Vec<VoiceEntry> = match &state.voices {
        Some(lib) => lib
            .list()
            .into_iter()
            .map(|v| VoiceEntry {
                name: v.name,
                description: v.transcript,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(axum::Json(VoiceList {
        object: "list".into(),
        voices: entries.iter().map(|e| e.name.clone()).collect(),
        data: entries,
    }))
}

#[utoipa::path(post, path = "/v1/audio/voices", request_body = CreateVoice,
    responses((status = 201, body = VoiceEntry), (status = 400, body = higgs_api::ErrorBody), (status = 401, body = higgs_api::ErrorBody), (status = 404, body = higgs_api::ErrorBody),
              (status = 413, body = higgs_api::ErrorBody), (status = 422, body = higgs_api::ErrorBody), (status = 429, body = higgs_api::ErrorBody),
              (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    AppJson(req): AppJson<CreateVoice>,
) -> Result<impl IntoResponse, HttpError> {
    let lib = library(&state)?;
    let bytes = higgs_api::decode_base64("audio_base64", &req.audio_base64)?;
    let limits = &state.config.limits;
    if bytes.len() as u64 > limits.max_reference_bytes {
        return Err(HttpError(ApiError::new(
            ErrorKind::PayloadTooLarge,
            "the recording is larger than the reference-audio limit",
        )));
    }
    let rate = state.engine.sample_rate() as u32;
    let lib_dir = lib.dir().to_path_buf();
    let (name, transcript) = (req.name.clone(), req.transcript.clone());
    // Decoding and writing audio is blocking work.
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        // Boxed: the error carries the decoder's error and is large.
        let lib = higgs_engine::voices::VoiceLibrary::open(&lib_dir).map_err(Box::new)?;
        lib.add(&name, &bytes, &transcript, rate).map_err(Box::new)
    })
    .await
    .map_err(|e| HttpError(ApiError::new(ErrorKind::Internal, e.to_string())))?
    .map_err(|e| map(*e, &st))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(VoiceEntry {
            name: req.name,
            description: req.transcript.trim().to_string(),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/audio/voices/{name}", params(("name" = String, Path, description = "voice name")),
    responses((status = 200, description = "deleted"), (status = 400, body = higgs_api::ErrorBody), (status = 401, body = higgs_api::ErrorBody), (status = 404, body = higgs_api::ErrorBody),
              (status = 413, body = higgs_api::ErrorBody), (status = 422, body = higgs_api::ErrorBody), (status = 429, body = higgs_api::ErrorBody),
              (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    let lib = library(&state)?;
    lib.delete(&name).map_err(|e| map(e, &state))?;
    Ok(axum::Json(
        serde_json::json!({"deleted": true, "name": name}),
    ))
}
