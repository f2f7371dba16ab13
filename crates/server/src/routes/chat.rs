//! `POST /v1/chat/completions` with audio output (OpenAI; the Higgs vLLM fork's conventions:
//! non-streaming `message.audio.data` = base64 file in `audio.format`, streaming
//! `delta.audio.data` = base64 raw PCM16 at 24 kHz).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use higgs_api::chat::ChatRequest;
use higgs_engine::{Event, StopReason};

use crate::error::AppJson;
use crate::request_id::ReqId;
use crate::{AppState, HttpError};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Generated text without the audio control tokens (`<|AUDIO_OUT|>`, `<|audio_eos|>`, ...).
fn visible_text(t: &str) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("<|") {
        out.push_str(&rest[..i]);
        match rest[i..].find("|>") {
            Some(j) => rest = &rest[i + j + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

fn finish_reason(r: Option<StopReason>) -> &'static str {
    match r {
        Some(StopReason::Length) => "length",
        _ => "stop",
    }
}

/// The transcripts of the library voices `audio.voice` names (an unknown name is a 404 with the
/// library's voices as suggestions, as on `/v1/audio/speech`) and, for `profile:` voices, the
/// library's profiles. Small file reads, off the async runtime.
async fn voice_context(
    service: &higgs_service::Service,
    job: &higgs_api::chat::ChatJob,
) -> Result<
    (
        std::collections::BTreeMap<String, String>,
        Option<higgs_text::VoiceProfiles>,
    ),
    HttpError,
> {
    let names = job.reference_names();
    let want_profiles = job
        .voices
        .iter()
        .any(|v| matches!(v, higgs_text::VoiceSpec::Profile(_)));
    let lib = service.library()?.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut transcripts = std::collections::BTreeMap::new();
        for n in names {
            let t = lib.transcript(&n).map_err(Box::new)?;
            transcripts.insert(n, t);
        }
        let profiles = if want_profiles {
            lib.profiles().map_err(Box::new)?
        } else {
            None
        };
        Ok::<_, Box<higgs_engine::voices::VoiceError>>((transcripts, profiles))
    })
    .await
    .map_err(|e| {
        higgs_api::ApiError::new(
            higgs_api::ErrorKind::Internal,
            format!("voice lookup task: {e}"),
        )
    })?;
    read.map_err(|e| service.voice_error(*e).into())
}

#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatRequest,
    responses((status = 200, description = "chat completion (JSON) or chunks (SSE)"),
              (status = 400, body = higgs_api::ErrorBody), (status = 401, body = higgs_api::ErrorBody), (status = 404, body = higgs_api::ErrorBody),
              (status = 413, body = higgs_api::ErrorBody), (status = 422, body = higgs_api::ErrorBody), (status = 429, body = higgs_api::ErrorBody),
              (status = 500, body = higgs_api::ErrorBody), (status = 503, body = higgs_api::ErrorBody)))]
pub async fn chat(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    note: crate::AccessNote,
    AppJson(req): AppJson<ChatRequest>,
) -> Result<Response, HttpError> {
    let service = &state.service;
    let rate = service.sample_rate();
    let mut job = req.validate(&service.config.limits, &service.voice_names())?;
    let decoded = service.decode_audio(std::mem::take(&mut job.audio)).await?;
    job.attach_audio(decoded);
    if !job.voices.is_empty() {
        let (transcripts, profiles) = voice_context(service, &job).await?;
        job.attach_voices(&transcripts, profiles.as_ref())?;
    }
    job.request.request_id = request_id.clone();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let model = req.model.clone();
    note.note_request(&job.request);
    let (stream, early) = service.start(job.request).await?;
    if !job.stream {
        let c = service.collect(stream, early).await?;
        note.add_audio_seconds(c.samples.len() as f64 / f64::from(rate.max(1)));
        let data = base64::engine::general_purpose::STANDARD
            .encode(higgs_service::run::encode(job.format, &c.samples, rate)?);
        let body = serde_json::json!({
            "id": id, "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason(c.reason), "message": {
                "role": "assistant", "content": visible_text(&c.text),
                "audio": {"id": format!("audio-{}", uuid::Uuid::new_v4().simple()), "data": data, "expires_at": 0, "transcript": ""}}}],
            "usage": {"prompt_tokens": c.usage.prompt_tokens, "completion_tokens": c.usage.completion_tokens,
                      "total_tokens": c.usage.prompt_tokens + c.usage.completion_tokens},
        });
        return Ok(axum::Json(body).into_response());
    }
    let include_usage = job.include_usage;
    let audio_id = format!("audio-{}", uuid::Uuid::new_v4().simple());
    let chunk = move |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({"id": id, "object": "chat.completion.chunk", "created": now(), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let first = chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )
    .to_string();
    let init = (stream, std::collections::VecDeque::from([first]), false);
    let st = futures_util::stream::unfold(init, move |(mut s, mut pending, mut done)| {
        let chunk = chunk.clone();
        let audio_id = audio_id.clone();
        let rid = request_id.clone();
        let note = note.clone();
        async move {
            let rid = rid.as_deref().unwrap_or("");
            loop {
                if let Some(p) = pending.pop_front() {
                    let ev = axum::response::sse::Event::default().data(p);
                    return Some((Ok::<_, std::convert::Infallible>(ev), (s, pending, done)));
                }
                if done {
                    return None;
                }
                let ev = s.next().await;
                if let Some(ev) = &ev {
                    note.observe(ev, rate);
                }
                match ev {
                    Some(Event::Audio { samples, .. }) => {
                        let data = base64::engine::general_purpose::STANDARD
                            .encode(higgs_audio_io::encode::pcm_s16le(&samples));
                        let d = serde_json::json!({"audio": {"id": audio_id, "data": data, "expires_at": 0, "transcript": ""}});
                        pending.push_back(chunk(d, None).to_string());
                    }
                    Some(Event::Text { text, .. }) => {
                        let t = visible_text(&text);
                        if !t.is_empty() {
                            pending.push_back(
                                chunk(serde_json::json!({"content": t}), None).to_string(),
                            );
                        }
                    }
                    Some(Event::Finished { reason, usage, .. }) => {
                        pending.push_back(
                            chunk(serde_json::json!({}), Some(finish_reason(Some(reason))))
                                .to_string(),
                        );
                        if include_usage {
                            let mut u = chunk(serde_json::json!({}), None);
                            u["choices"] = serde_json::json!([]);
                            u["usage"] = serde_json::json!({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                "total_tokens": usage.prompt_tokens + usage.completion_tokens});
                            pending.push_back(u.to_string());
                        }
                        pending.push_back("[DONE]".to_string());
                        done = true;
                    }
                    Some(Event::Failed(e)) => {
                        tracing::warn!(
                            request_id = rid,
                            request = s.id,
                            "generation failed mid-stream: {e}"
                        );
                        pending.push_back(serde_json::json!({"error": {"message": e.client_message(), "type": e.error_type()}}).to_string());
                        pending.push_back("[DONE]".to_string());
                        done = true;
                    }
                    Some(Event::Started { .. } | Event::Chunk { .. }) => {}
                    None => {
                        tracing::error!(
                            request_id = rid,
                            request = s.id,
                            "the engine stopped mid-stream"
                        );
                        pending.push_back(serde_json::json!({"error": {"message": "the server stopped while generating; retry", "type": "unavailable"}}).to_string());
                        pending.push_back("[DONE]".to_string());
                        done = true;
                    }
                }
            }
        }
    });
    Ok(axum::response::sse::Sse::new(st).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_tokens_are_hidden() {
        assert_eq!(
            super::visible_text("<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|><|eot_id|>"),
            ""
        );
        assert_eq!(super::visible_text("Hi <|eot_id|>there"), "Hi there");
        assert_eq!(super::visible_text("odd <| tail"), "odd");
    }
}
