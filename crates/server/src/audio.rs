//! Running a job on the engine and turning its events into HTTP bodies.

use axum::body::{Body, Bytes};
use futures_util::stream;
use higgs_api::{ApiError, ErrorKind};
use higgs_audio_io::{AudioFormat, StreamEncoder};
use higgs_engine::{Event, GenerateRequest, RequestStream, StopReason, Usage};

use crate::AppState;

/// Submits and waits for the request to start (so admission failures — unknown voice, bad
/// reference audio, too long — become proper error statuses before any byte is sent).
pub async fn start(
    state: &AppState,
    mut req: GenerateRequest,
) -> Result<(RequestStream, Vec<Event>), ApiError> {
    req.timeout = req.timeout.or(state.config.request_timeout);
    if !state.is_ready() {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "the model is still loading; retry in a moment",
        ));
    }
    let mut s = state.engine.submit(req).map_err(ApiError::from_submit)?;
    let mut early = Vec::new();
    loop {
        match s.next().await {
            Some(Event::Failed(e)) => {
                return Err(ApiError::from_generation(e, &state.voice_names()))
            }
            Some(e @ Event::Started { .. }) => {
                early.push(e);
                return Ok((s, early));
            }
            Some(e) => early.push(e),
            None => return Err(ApiError::new(ErrorKind::Unavailable, "the engine stopped")),
        }
    }
}

/// Everything a finished request produced.
#[derive(Debug, Default)]
pub struct Collected {
    pub samples: Vec<f32>,
    pub text_ids: Vec<u32>,
    pub text: String,
    pub usage: Usage,
    pub reason: Option<StopReason>,
}

pub async fn collect(
    state: &AppState,
    s: RequestStream,
    early: Vec<Event>,
) -> Result<Collected, ApiError> {
    collect_with(state, s, early, |_| Ok(())).await
}

/// [`collect`], also handing every audio chunk to `on_audio` as it arrives.
pub async fn collect_with(
    state: &AppState,
    mut s: RequestStream,
    early: Vec<Event>,
    mut on_audio: impl FnMut(&[f32]) -> Result<(), ApiError>,
) -> Result<Collected, ApiError> {
    let mut c = Collected::default();
    let mut pending: std::collections::VecDeque<Event> = early.into();
    loop {
        let e = match pending.pop_front() {
            Some(e) => e,
            None => match s.next().await {
                Some(e) => e,
                None => return Err(ApiError::new(ErrorKind::Unavailable, "the engine stopped")),
            },
        };
        match e {
            Event::Audio { samples, .. } => {
                on_audio(&samples)?;
                c.samples.extend(samples);
            }
            Event::Text { ids, text } => {
                c.text_ids.extend(ids);
                c.text.push_str(&text);
            }
            Event::Finished { reason, usage, .. } => {
                c.usage = usage;
                c.reason = Some(reason);
                return Ok(c);
            }
            Event::Failed(e) => return Err(ApiError::from_generation(e, &state.voice_names())),
            Event::Started { .. } => {}
        }
    }
}

/// A chunked body of `format` bytes, encoded as the audio arrives. Dropping the body (client gone)
/// drops the request stream, which cancels the generation.
pub fn streaming_body(
    s: RequestStream,
    format: AudioFormat,
    sample_rate: u32,
) -> Result<Body, ApiError> {
    let enc = StreamEncoder::new(format, sample_rate)
        .map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e.to_string()))?;
    let st = stream::unfold((s, Some(enc)), |(mut s, mut enc)| async move {
        loop {
            let e = enc.as_mut()?;
            match s.next().await {
                Some(Event::Audio { samples, .. }) => match e.push(&samples) {
                    Ok(b) if b.is_empty() => continue,
                    Ok(b) => return Some((Ok::<Bytes, std::io::Error>(Bytes::from(b)), (s, enc))),
                    Err(err) => {
                        return Some((Err(std::io::Error::other(err.to_string())), (s, None)))
                    }
                },
                Some(Event::Finished { .. }) => {
                    let e = enc.take()?;
                    return match e.finish() {
                        Ok(b) => Some((Ok(Bytes::from(b)), (s, None))),
                        Err(err) => Some((Err(std::io::Error::other(err.to_string())), (s, None))),
                    };
                }
                // A failure ends the chunked body with an error: hyper then closes the connection
                // without the terminating chunk, so a client cannot take a cut stream for a whole one.
                Some(Event::Failed(err)) => {
                    tracing::warn!(request = s.id, "generation failed mid-stream: {err}");
                    return Some((Err(std::io::Error::other(err.client_message())), (s, None)));
                }
                Some(_) => continue,
                None => {
                    tracing::error!(request = s.id, "the engine stopped mid-stream");
                    let err = std::io::Error::other("the engine stopped mid-stream");
                    return Some((Err(err), (s, None)));
                }
            }
        }
    });
    Ok(Body::from_stream(st))
}

pub fn encode(format: AudioFormat, samples: &[f32], rate: u32) -> Result<Vec<u8>, ApiError> {
    higgs_audio_io::encode(format, samples, rate)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("encoding {format}: {e}")))
}
