//! One access line per request, and the HTTP-level metrics, written when the response has been
//! sent in full (or the client went away): request id, method, route, status, latency, the audio
//! seconds sent and the voice. Handlers fill in what only they know through [`AccessNote`], which
//! this layer puts in every request's extensions; streams add their audio as it goes out.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use http_body::{Body as _, Frame, SizeHint};

/// What a handler knows about its request: the voice used and the audio it sent.
#[derive(Clone, Default)]
pub struct AccessNote(Arc<Mutex<Note>>);

#[derive(Default)]
struct Note {
    voice: Option<String>,
    audio_s: f64,
}

impl AccessNote {
    pub fn set_voice(&self, voice: impl Into<String>) {
        if let Ok(mut n) = self.0.lock() {
            n.voice = Some(voice.into());
        }
    }

    pub fn add_audio_seconds(&self, seconds: f64) {
        if let Ok(mut n) = self.0.lock() {
            n.audio_s += seconds;
        }
    }

    /// The voice of `req` for the log: library names (comma-joined for dialogue), `uploaded` for
    /// audio sent with the request, `-` for none.
    pub fn note_request(&self, req: &higgs_engine::GenerateRequest) {
        use higgs_engine::{ClipInput, Prompting};
        let mut names: Vec<String> = Vec::new();
        match &req.prompting {
            Prompting::Script {
                voices, uploads, ..
            } => {
                for v in voices {
                    match v {
                        higgs_text::context::VoiceSpec::Reference(n)
                            if uploads.iter().any(|u| &u.name == n) =>
                        {
                            names.push("uploaded".into())
                        }
                        higgs_text::context::VoiceSpec::Reference(n) => names.push(n.clone()),
                        higgs_text::context::VoiceSpec::Profile(n) => {
                            names.push(format!("profile:{n}"))
                        }
                    }
                }
            }
            Prompting::Messages { clips, .. } => {
                for c in clips {
                    names.push(match c {
                        ClipInput::Voice(n) => n.clone(),
                        _ => "uploaded".into(),
                    });
                }
            }
        }
        names.dedup();
        if !names.is_empty() {
            self.set_voice(names.join(","));
        }
    }

    /// Counts the audio of an engine event as sent.
    pub fn observe(&self, event: &higgs_engine::Event, sample_rate: u32) {
        if let higgs_engine::Event::Audio { samples, .. } = event {
            self.add_audio_seconds(samples.len() as f64 / f64::from(sample_rate.max(1)));
        }
    }

    /// The voice of a `/generate` `ref_audio`: library names and `profile:` specs as given,
    /// anything else (base64 audio) as `uploaded`, so no request data reaches the log.
    pub fn note_ref_audio(&self, ref_audio: Option<&str>, library: &[String]) {
        let Some(r) = ref_audio.map(str::trim).filter(|r| !r.is_empty()) else {
            return;
        };
        let mut names: Vec<String> = r
            .split(',')
            .map(|p| {
                let p = p.trim();
                if library.iter().any(|n| n == p)
                    || (p.starts_with("profile:")
                        && p.len() <= 80
                        && !p.contains(char::is_whitespace))
                {
                    p.to_string()
                } else {
                    "uploaded".to_string()
                }
            })
            .collect();
        names.dedup();
        self.set_voice(names.join(","));
    }

    fn snapshot(&self) -> (Option<String>, f64) {
        self.0
            .lock()
            .map(|n| (n.voice.clone(), n.audio_s))
            .unwrap_or_default()
    }
}

/// Handlers take the note as an extractor; outside the access layer (unit tests of a bare
/// router) it is a detached one nobody reads.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AccessNote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<AccessNote>()
            .cloned()
            .unwrap_or_default())
    }
}

/// `# HELP` texts of the HTTP-level metrics (call once after installing the recorder).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "higgs_http_requests_total",
        "HTTP requests answered, by route pattern and status code."
    );
    metrics::describe_histogram!(
        "higgs_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's arrival to the last byte of its response, by route pattern."
    );
    metrics::describe_histogram!(
        "higgs_real_time_factor",
        "Audio seconds sent per wall-clock second of the request (above 1 = faster than real time), by route."
    );
}

/// Adds the access line and the HTTP metrics to every route of `router` (inside the request-id
/// layers, so the id is known).
pub fn with_access_log<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(access))
}

async fn access(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let note = AccessNote::default();
    req.extensions_mut().insert(note.clone());
    // The route's pattern (`/v1/audio/voices/{name}`), never the raw path: bounded label values,
    // and no user text in the logs.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let request_id = req
        .extensions()
        .get::<tower_http::request_id::RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = req.method().to_string();
    let res = next.run(req).await;
    let line = Line {
        start,
        request_id,
        method,
        route,
        status: res.status().as_u16(),
        head_ms: start.elapsed().as_secs_f64() * 1e3,
        note,
    };
    res.map(|body| {
        Body::new(LoggedBody {
            inner: body,
            line: Some(line),
        })
    })
}

struct Line {
    start: Instant,
    request_id: String,
    method: String,
    route: String,
    status: u16,
    head_ms: f64,
    note: AccessNote,
}

impl Line {
    fn write(self, complete: bool) {
        let latency = self.start.elapsed().as_secs_f64();
        let (voice, audio_s) = self.note.snapshot();
        let status = self.status.to_string();
        metrics::counter!("higgs_http_requests_total",
            "route" => self.route.clone(), "status" => status)
        .increment(1);
        metrics::histogram!("higgs_http_request_duration_seconds", "route" => self.route.clone())
            .record(latency);
        if audio_s > 0.0 && latency > 0.0 {
            metrics::histogram!("higgs_real_time_factor", "route" => self.route.clone())
                .record(audio_s / latency);
        }
        tracing::info!(
            target: "higgs_server::access",
            request_id = %self.request_id,
            method = %self.method,
            route = %self.route,
            status = self.status,
            latency_ms = format_args!("{:.1}", latency * 1e3),
            first_byte_ms = format_args!("{:.1}", self.head_ms),
            audio_s = format_args!("{audio_s:.2}"),
            voice = %voice.as_deref().unwrap_or("-"),
            outcome = %if complete { "sent" } else { "client_gone" },
            "{} {} {}",
            self.method,
            self.route,
            self.status
        );
    }
}

/// The response body, passed through; the line is written when it ends (or is dropped early).
struct LoggedBody {
    inner: Body,
    line: Option<Line>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            if let Some(line) = self.line.take() {
                line.write(true);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            // Dropped before its end: the client hung up, or the body was empty and never polled
            // (hyper does not poll a body that reports its end up front).
            let complete = self.inner.is_end_stream();
            line.write(complete);
        }
    }
}
