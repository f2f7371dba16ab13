//! Running one request on the engine: submit, wait for its start, collect its events.

use higgs_api::{ApiError, ErrorKind};
use higgs_audio_io::AudioFormat;
use higgs_engine::{Event, GenerateRequest, RequestStream, StopReason, Usage};

use crate::Service;

/// Everything a finished request produced.
#[derive(Debug, Default)]
pub struct Collected {
    pub samples: Vec<f32>,
    pub text_ids: Vec<u32>,
    pub text: String,
    pub usage: Usage,
    pub reason: Option<StopReason>,
}

fn engine_stopped() -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "the engine stopped")
}

impl Service {
    /// Submits and waits for the request to start (so admission failures — unknown voice, bad
    /// reference audio, too long — become proper errors before any byte is sent). The pool picks
    /// the least-loaded engine; requests sent while the engines warm up wait in a queue; with no
    /// engine in rotation they are refused (503).
    pub async fn start(
        &self,
        mut req: GenerateRequest,
    ) -> Result<(RequestStream, Vec<Event>), ApiError> {
        req.timeout = req.timeout.or(self.config.request_timeout);
        let request_id = req.request_id.clone();
        let mut s = self.engine.submit(req).map_err(ApiError::from_submit)?;
        tracing::debug!(
            request_id = request_id.as_deref().unwrap_or(""),
            engine = s.engine(),
            engine_request = s.id,
            "submitted to an engine"
        );
        let mut early = Vec::new();
        loop {
            match s.next().await {
                Some(Event::Failed(e)) => return Err(self.generation_error(e)),
                Some(e @ Event::Started { .. }) => {
                    early.push(e);
                    return Ok((s, early));
                }
                Some(e) => early.push(e),
                None => return Err(engine_stopped()),
            }
        }
    }

    /// Collects a started request to its end.
    pub async fn collect(
        &self,
        s: RequestStream,
        early: Vec<Event>,
    ) -> Result<Collected, ApiError> {
        self.collect_with(s, early, |_| Ok(())).await
    }

    /// [`Self::collect`], also handing every audio chunk to `on_audio` as it arrives.
    pub async fn collect_with(
        &self,
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
                    None => return Err(engine_stopped()),
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
                Event::Failed(e) => return Err(self.generation_error(e)),
                Event::Started { .. } | Event::Chunk { .. } => {}
            }
        }
    }
}

/// A whole file of `format` from `samples`.
pub fn encode(format: AudioFormat, samples: &[f32], rate: u32) -> Result<Vec<u8>, ApiError> {
    higgs_audio_io::encode(format, samples, rate)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("encoding {format}: {e}")))
}

/// A streaming encoder for `format`; a format that cannot stream is the caller's error (422).
pub fn stream_encoder(
    format: AudioFormat,
    rate: u32,
) -> Result<higgs_audio_io::StreamEncoder, ApiError> {
    higgs_audio_io::StreamEncoder::new(format, rate)
        .map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e.to_string()))
}
