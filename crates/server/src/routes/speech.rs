//! `POST /v1/audio/speech` (OpenAI).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use higgs_api::speech::{SpeechRequest, StreamFormat};

use crate::error::AppJson;
use crate::request_id::ReqId;
use crate::{audio, AccessNote, AppState, HttpError};

#[utoipa::path(post, path = "/v1/audio/speech", request_body = SpeechRequest,
    responses((status = 200, description = "audio bytes: one whole file with Content-Length (wav and flac by default, any format with `stream: false`) or a chunked body encoded as generated (pcm, mp3, opus by default, any format with `stream: true`); or SSE events", content_type = "application/octet-stream"),
              (status = 400, body = higgs_api::ErrorBody), (status = 401, body = higgs_api::ErrorBody), (status = 404, body = higgs_api::ErrorBody),
              (status = 413, body = higgs_api::ErrorBody), (status = 422, body = higgs_api::ErrorBody), (status = 429, body = higgs_api::ErrorBody),
              (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn speech(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    note: AccessNote,
    AppJson(req): AppJson<SpeechRequest>,
) -> Result<Response, HttpError> {
    let service = &state.service;
    let mut job = req.validate(&service.config.limits, &service.voice_names())?;
    job.request.request_id = request_id.clone();
    let rate = service.sample_rate();
    note.note_request(&job.request);
    let (stream, early) = service.start(job.request).await?;
    match job.stream {
        StreamFormat::File => {
            // The whole clip first, then one file with its true sizes: a failure mid-generation
            // is still a proper error status, and the length is known (`Content-Length`).
            let c = service.collect(stream, early).await?;
            let (format, speed) = (job.format, job.speed);
            // `speed`: the whole clip time-stretched (the same samples a stream of it carries).
            let (bytes, n) = tokio::task::spawn_blocking(move || {
                let samples = if speed == 1.0 {
                    c.samples
                } else {
                    higgs_audio_io::time_stretch(&c.samples, speed, rate).map_err(|e| {
                        higgs_api::ApiError::new(
                            higgs_api::ErrorKind::Internal,
                            format!("time stretch: {e}"),
                        )
                    })?
                };
                higgs_service::run::encode(format, &samples, rate).map(|b| (b, samples.len()))
            })
            .await
            .map_err(|e| {
                higgs_api::ApiError::new(
                    higgs_api::ErrorKind::Internal,
                    format!("encoding task: {e}"),
                )
            })??;
            note.add_audio_seconds(n as f64 / f64::from(rate.max(1)));
            Ok((
                [
                    (header::CONTENT_TYPE, job.format.content_type().to_string()),
                    (header::CONTENT_LENGTH, bytes.len().to_string()),
                ],
                bytes,
            )
                .into_response())
        }
        StreamFormat::Audio => {
            let body =
                audio::streaming_body(stream, job.format, rate, job.speed, request_id, note)?;
            Ok(([(header::CONTENT_TYPE, job.format.content_type())], body).into_response())
        }
        StreamFormat::Sse => {
            // `speech.audio.delta` events carry base64 chunks of the requested format as it is
            // encoded (time-stretched first for `speed`); `speech.audio.done` carries the usage.
            let enc = audio::SpeechEncoder::new(job.format, rate, job.speed, note)?;
            let init = (
                stream,
                Some(enc),
                std::collections::VecDeque::<String>::new(),
            );
            let format = job.format;
            let st = futures_util::stream::unfold(init, move |(mut s, mut enc, mut pending)| {
                let rid = request_id.clone();
                async move {
                    use higgs_service::errors::internal_mid_stream;
                    let rid = rid.as_deref();
                    // Encoder failures are ours: logged with the request id, not sent.
                    let enc_error = |err: &dyn std::fmt::Display| {
                        let m = internal_mid_stream(rid, &format_args!("encoding {format}: {err}"));
                        serde_json::json!({"type": "error", "error": {"message": m, "type": "internal_error"}}).to_string()
                    };
                    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
                    let delta = |b: &[u8]| {
                        serde_json::json!({"type": "speech.audio.delta", "audio": b64(b)})
                            .to_string()
                    };
                    loop {
                        if let Some(p) = pending.pop_front() {
                            let ev = axum::response::sse::Event::default().data(p);
                            return Some((
                                Ok::<_, std::convert::Infallible>(ev),
                                (s, enc, pending),
                            ));
                        }
                        let e = enc.as_mut()?;
                        let ev = s.next().await;
                        match ev {
                            Some(higgs_engine::Event::Audio { samples, .. }) => {
                                match e.push(&samples) {
                                    Ok(b) if !b.is_empty() => pending.push_back(delta(&b)),
                                    Ok(_) => {}
                                    Err(err) => {
                                        pending.push_back(enc_error(&err));
                                        enc = None;
                                    }
                                }
                            }
                            Some(higgs_engine::Event::Finished { usage, .. }) => {
                                if let Some(e) = enc.take() {
                                    match e.finish() {
                                        Ok(tail) if !tail.is_empty() => {
                                            pending.push_back(delta(&tail))
                                        }
                                        Ok(_) => {}
                                        Err(err) => pending.push_back(enc_error(&err)),
                                    }
                                }
                                pending.push_back(
                                serde_json::json!({"type": "speech.audio.done", "usage": {
                                    "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
                                    "total_tokens": usage.prompt_tokens + usage.completion_tokens}})
                                .to_string(),
                            );
                            }
                            Some(higgs_engine::Event::Failed(err)) => {
                                tracing::warn!(
                                    request_id = rid.unwrap_or(""),
                                    request = s.id,
                                    "generation failed mid-stream: {err}"
                                );
                                pending.push_back(serde_json::json!({"type": "error", "error": {"message": err.client_message(), "type": err.error_type()}}).to_string());
                                enc = None;
                            }
                            Some(_) => {}
                            None => {
                                tracing::error!(
                                    request_id = rid.unwrap_or(""),
                                    request = s.id,
                                    "the engine stopped mid-stream"
                                );
                                pending.push_back(serde_json::json!({"type": "error", "error": {"message": "the server stopped while generating; retry", "type": "unavailable"}}).to_string());
                                enc = None;
                            }
                        }
                    }
                }
            });
            Ok(axum::response::sse::Sse::new(st)
                .keep_alive(axum::response::sse::KeepAlive::default())
                .into_response())
        }
    }
}
