//! Voice library routes: list, one voice's details, upload (audio + transcript, validated and
//! persisted), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
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

/// `GET /v1/audio/voices/{name}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VoiceDetailsBody {
    pub name: String,
    /// Exact words spoken in the recording.
    pub transcript: String,
    /// The recording's container (`wave`, `flac`, `ogg`, `mp3`).
    pub format: String,
    pub duration_seconds: f64,
    /// Sample rate of the stored recording, Hz.
    pub sample_rate: u32,
    pub channels: usize,
    /// Size of the recording file.
    pub bytes: u64,
    /// Whether the reference codes of this recording are cached (requests skip the encode).
    pub cached_codes: bool,
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

#[utoipa::path(get, path = "/v1/audio/voices", responses((status = 200, body = VoiceList), (status = 401, body = higgs_api::ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<VoiceList>, HttpError> {
    let entries: Vec<VoiceEntry> = state
        .service
        .list_voices()
        .into_iter()
        .map(|v| VoiceEntry {
            name: v.name,
            description: v.transcript,
        })
        .collect();
    Ok(axum::Json(VoiceList {
        object: "list".into(),
        voices: entries.iter().map(|e| e.name.clone()).collect(),
        data: entries,
    }))
}

#[utoipa::path(get, path = "/v1/audio/voices/{name}", params(("name" = String, Path, description = "voice name")),
    responses((status = 200, body = VoiceDetailsBody), (status = 400, body = higgs_api::ErrorBody, description = "not a valid voice name"),
              (status = 401, body = higgs_api::ErrorBody),
              (status = 404, body = higgs_api::ErrorBody, description = "no such voice (`suggestions`: the most similar names) or no voice directory"),
              (status = 422, body = higgs_api::ErrorBody, description = "the recording cannot be read"),
              (status = 429, body = higgs_api::ErrorBody), (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn details(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<VoiceDetailsBody>, HttpError> {
    let d = state.service.voice_details(&name).await?;
    Ok(axum::Json(VoiceDetailsBody {
        name: d.name,
        transcript: d.transcript,
        format: d.format,
        duration_seconds: d.duration_seconds,
        sample_rate: d.sample_rate,
        channels: d.channels,
        bytes: d.bytes,
        cached_codes: d.cached_codes,
    }))
}

#[utoipa::path(post, path = "/v1/audio/voices", request_body = CreateVoice,
    responses((status = 201, body = VoiceEntry), (status = 400, body = higgs_api::ErrorBody), (status = 401, body = higgs_api::ErrorBody), (status = 404, body = higgs_api::ErrorBody),
              (status = 409, body = higgs_api::ErrorBody), (status = 413, body = higgs_api::ErrorBody), (status = 422, body = higgs_api::ErrorBody), (status = 429, body = higgs_api::ErrorBody),
              (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    AppJson(req): AppJson<CreateVoice>,
) -> Result<impl IntoResponse, HttpError> {
    let service = &state.service;
    // The library check comes first: without one, the upload is a 404 whatever its content.
    service.library()?;
    let bytes = higgs_api::decode_base64("audio_base64", &req.audio_base64)?;
    service
        .add_voice(req.name.clone(), bytes, req.transcript.clone())
        .await?;
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
              (status = 409, body = higgs_api::ErrorBody), (status = 413, body = higgs_api::ErrorBody), (status = 422, body = higgs_api::ErrorBody), (status = 429, body = higgs_api::ErrorBody),
              (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    state.service.delete_voice(&name)?;
    Ok(axum::Json(
        serde_json::json!({"deleted": true, "name": name}),
    ))
}
