//! One RunPod job: its input kinds and how each runs on the shared engine.
//!
//! - the native `/generate` schema (plus `stream: true` for audio partials);
//! - `{"health_check": true}`;
//! - the platform's OpenAI passthrough (`openai_route` + `openai_input`), run in-process through
//!   the router the caller hands in (the HTTP server's own, so the answers are byte-for-byte the
//!   server's; this crate does not depend on the server).
//!
//! The RunPod job id is the request id: it names the job's tracing span and goes into the engine
//! request (and, for the passthrough, into `x-request-id`).
//!
//! A job ends in exactly one [`Outcome`]: an output, or an error message for the platform's
//! top-level `error` (job FAILED).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request};
use base64::Engine as _;
use futures_util::StreamExt;
use higgs_api::generate::GenerateRequestWire;
use higgs_api::{ApiError, ErrorKind};
use higgs_service::{run_generate, GenerateOptions, Service};
use higgs_storage::{EgressPolicy, RequestS3Config, S3Config, Uploader};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// The platform caps one streamed chunk at 1 MB; raw audio pieces are cut well below that so the
/// base64 text plus the JSON around it stays under.
pub const MAX_STREAM_PIECE_BYTES: usize = 512 * 1024;

/// Default cap on an inline result: RunPod rejects job-done bodies around 20 MB (and `/run`
/// payloads are capped at 10 MB), so stay clearly below with a clear error instead of a platform 400.
pub const DEFAULT_MAX_INLINE_BYTES: usize = 15 * 1024 * 1024;

/// OpenAI routes the passthrough serves (anything else is refused by name).
pub const OPENAI_ROUTES: [&str; 4] = [
    "/v1/audio/speech",
    "/v1/chat/completions",
    "/v1/models",
    "/v1/audio/voices",
];

/// A job as the platform hands it out (`id`, `input`, optional `webhook`; RunPod keeps other
/// request keys such as `s3Config` on the job).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Job {
    pub id: String,
    #[serde(default)]
    pub input: Value,
    #[serde(rename = "s3Config", default, skip_serializing_if = "Option::is_none")]
    pub s3_config: Option<RequestS3Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Output(Value),
    /// The platform's top-level `error` string: a JSON object with `error_type`, `error_message`
    /// and `status` (the shape the SDK uses for handler exceptions), readable as text too.
    Error(String),
}

impl Outcome {
    /// A failure of one of the API's error kinds: type and status from `ErrorKind`, the one table
    /// both doors use.
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::from_api(&ApiError::new(kind, message))
    }

    /// A failure the API has no kind for (RunPod only: `cancelled` 499, `result_refused` 502).
    pub fn error(kind: &str, message: impl Into<String>, status: u16) -> Self {
        Self::Error(
            json!({"error_type": kind, "error_message": message.into(), "status": status})
                .to_string(),
        )
    }

    pub fn from_api(e: &ApiError) -> Self {
        let mut v = json!({
            "error_type": e.kind.error_type(),
            "error_message": e.message,
            "status": e.kind.status(),
        });
        if let Some(p) = &e.param {
            v["param"] = json!(p);
        }
        if !e.suggestions.is_empty() {
            v["voice_suggestions"] = json!(e.suggestions);
        }
        Self::Error(v.to_string())
    }

    /// The job-done body (`{"output": …}` or `{"error": "…"}`), plus `stopPod` when the worker is
    /// to be recycled.
    pub fn to_body(&self, stop_pod: bool) -> Value {
        let mut v = match self {
            Self::Output(o) => json!({ "output": o }),
            Self::Error(e) => json!({ "error": e }),
        };
        if stop_pod {
            v["stopPod"] = json!(true);
        }
        v
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}

/// What every job needs: the service (engine, voices, uploader, limits) and the router that
/// serves the OpenAI passthrough.
#[derive(Clone)]
pub struct JobContext {
    pub service: Service,
    openai: axum::Router,
    pub max_inline_bytes: usize,
    /// Where endpoints from jobs (`s3Config.endpointUrl`, the local API's `webhook`) may point.
    pub egress: Arc<EgressPolicy>,
}

impl JobContext {
    /// `openai` serves [`OPENAI_ROUTES`] (the HTTP server's router over the same `service`); it
    /// should require no API key: the platform authenticates callers before a job exists.
    pub fn new(service: Service, openai: axum::Router, max_inline_bytes: usize) -> Self {
        Self {
            service,
            openai,
            max_inline_bytes,
            egress: Arc::new(EgressPolicy::public_only()),
        }
    }

    /// Endpoints from jobs may also reach the hosts `policy` allows (public ones always).
    pub fn with_egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = Arc::new(policy);
        self
    }

    /// Runs `job`; partial outputs (streamed chunks) go to `partials` in order. Dropping the future
    /// cancels the generation.
    pub async fn execute(&self, job: &Job, partials: mpsc::UnboundedSender<Value>) -> Outcome {
        let span = tracing::info_span!("job", request_id = %job.id);
        tracing::Instrument::instrument(self.execute_in_span(job, partials), span).await
    }

    async fn execute_in_span(&self, job: &Job, partials: mpsc::UnboundedSender<Value>) -> Outcome {
        let Some(input) = job.input.as_object() else {
            return Outcome::failed(ErrorKind::BadRequest, "the job input must be a JSON object: the /generate fields (\"transcript\", \"ref_audio\", ...), {\"health_check\": true}, or {\"openai_route\": ..., \"openai_input\": ...}");
        };
        let outcome = if input.get("health_check").and_then(Value::as_bool) == Some(true) {
            self.health()
        } else if input.contains_key("openai_route") {
            self.openai(job, input, &partials).await
        } else {
            self.generate(job, input, &partials).await
        };
        self.enforce_inline_limit(outcome)
    }

    /// The health report, the same as the HTTP server's `GET /health` (`higgs_service::health`).
    fn health(&self) -> Outcome {
        let (_, h) = self.service.health();
        match serde_json::to_value(&h) {
            Ok(v) => Outcome::Output(v),
            Err(e) => Outcome::failed(ErrorKind::Internal, format!("health report: {e}")),
        }
    }

    async fn generate(
        &self,
        job: &Job,
        input: &Map<String, Value>,
        partials: &mpsc::UnboundedSender<Value>,
    ) -> Outcome {
        let mut fields = input.clone();
        // `health_check: false` is a generation like any other.
        fields.remove("health_check");
        let stream = match fields.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Outcome::failed(
                    ErrorKind::BadRequest,
                    format!("stream must be true or false, got {other}"),
                )
            }
        };
        // `s3Config` belongs next to `input` in a RunPod request; accept it inside too.
        let s3 = match fields.remove("s3Config") {
            None | Some(Value::Null) => job.s3_config.clone(),
            Some(v) => match serde_json::from_value::<RequestS3Config>(v) {
                Ok(c) => Some(c),
                Err(e) => {
                    return Outcome::failed(ErrorKind::BadRequest, format!("s3Config: {e} (expected {{\"accessId\", \"accessSecret\", \"bucketName\", \"endpointUrl\"}})"))
                }
            },
        };
        let req: GenerateRequestWire = match serde_json::from_value(Value::Object(fields)) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::failed(
                    ErrorKind::BadRequest,
                    format!("invalid job input: {e}; see the /generate schema (docs/server.md)"),
                )
            }
        };
        let uploader = match s3.map(|c| self.request_uploader(&c)).transpose() {
            Ok(u) => u,
            Err(e) => return client_failure(e, job),
        };
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let opts = GenerateOptions {
            uploader,
            stream: stream.then_some(tx),
            inline_when_streamed: false,
            request_id: Some(job.id.clone()),
        };
        let forward = forward_audio_pieces(
            rx,
            partials.clone(),
            req.output_format.clone(),
            self.service.engine.sample_rate(),
        );
        let (result, chunks) = tokio::join!(run_generate(&self.service, &req, opts), forward);
        match result {
            Ok(resp) => {
                let mut v = serde_json::to_value(&resp).unwrap_or(Value::Null);
                if stream {
                    v["streamed_chunks"] = json!(chunks);
                }
                Outcome::Output(v)
            }
            Err(e) => client_failure(e, job),
        }
    }

    fn request_uploader(&self, c: &RequestS3Config) -> Result<Arc<Uploader>, ApiError> {
        let base = self.service.uploader.as_ref().map(|u| u.config());
        let cfg = S3Config::from_request(c, base)
            .map_err(|e| ApiError::invalid("s3Config", e.to_string()))?;
        // The endpoint came with the job: checked against the egress policy, resolved by the
        // guarded resolver, never redirected (SSRF).
        let retry = self
            .service
            .uploader
            .as_ref()
            .map(|u| u.retry_policy().clone())
            .unwrap_or_default();
        let up = Uploader::for_request(cfg, retry, &self.egress)
            .map_err(|e| ApiError::invalid("s3Config", e.to_string()))?;
        Ok(Arc::new(up))
    }

    async fn openai(
        &self,
        job: &Job,
        input: &Map<String, Value>,
        partials: &mpsc::UnboundedSender<Value>,
    ) -> Outcome {
        let route = input
            .get("openai_route")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !OPENAI_ROUTES.contains(&route) {
            return Outcome::failed(
                ErrorKind::NotFound,
                format!(
                    "openai_route {route:?} is not served; use one of {}",
                    OPENAI_ROUTES.join(", ")
                ),
            );
        }
        let body = input.get("openai_input").filter(|v| !v.is_null());
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = match Request::builder()
            .method(method)
            .uri(route)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
        {
            Ok(r) => r,
            Err(e) => return internal_failure(job, &e),
        };
        // The job id is the request id; an id that is no header value gets a generated one.
        if let Ok(id) = header::HeaderValue::from_str(&job.id) {
            req.headers_mut().insert("x-request-id", id);
        }
        let resp = match tower::ServiceExt::oneshot(self.openai.clone(), req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let mut body = resp.into_body().into_data_stream();
        if status.is_success() && content_type.starts_with("text/event-stream") {
            // SSE: every event is a partial (raw text, as RunPod's vLLM worker yields them); the
            // final output aggregates them when that fits.
            let mut buf = String::new();
            let mut events = Vec::new();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(c) => buf.push_str(&String::from_utf8_lossy(&c)),
                    Err(e) => {
                        return internal_failure(
                            job,
                            &format_args!("{route}: the event stream broke: {e}"),
                        )
                    }
                }
                while let Some(end) = buf.find("\n\n") {
                    let ev: String = buf.drain(..end + 2).collect();
                    let _ = partials.send(Value::String(ev.clone()));
                    events.push(Value::String(ev));
                }
            }
            if !buf.trim().is_empty() {
                let _ = partials.send(Value::String(buf.clone()));
                events.push(Value::String(buf));
            }
            let total: usize = events.iter().map(|e| e.as_str().map_or(0, str::len)).sum();
            if total + 1024 > self.max_inline_bytes {
                return Outcome::Output(json!({
                    "streamed_chunks": events.len(),
                    "aggregate_omitted": "the streamed events are too large to repeat in the final result; read them from /stream",
                }));
            }
            return Outcome::Output(Value::Array(events));
        }
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => all.extend_from_slice(&c),
                Err(e) => {
                    return internal_failure(job, &format_args!("{route}: the response broke: {e}"))
                }
            }
        }
        if !status.is_success() {
            // The server's OpenAI error body: keep its message/type/param.
            let parsed: Value = serde_json::from_slice(&all).unwrap_or(Value::Null);
            let err = &parsed["error"];
            let mut v = json!({
                "error_type": err["type"].as_str().unwrap_or("error"),
                "error_message": err["message"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&all).into_owned()),
                "status": status.as_u16(),
            });
            if let Some(p) = err["param"].as_str() {
                v["param"] = json!(p);
            }
            if let Some(s) = err.get("suggestions").filter(|s| !s.is_null()) {
                v["voice_suggestions"] = s.clone();
            }
            return Outcome::Error(v.to_string());
        }
        if content_type.starts_with("application/json") {
            return match serde_json::from_slice(&all) {
                Ok(v) => Outcome::Output(v),
                Err(e) => internal_failure(job, &format_args!("bad JSON from {route}: {e}")),
            };
        }
        // Binary (audio): the convention of RunPod's vLLM-Omni worker.
        Outcome::Output(json!({
            "data_b64": base64::engine::general_purpose::STANDARD.encode(&all),
            "content_type": content_type,
            "size_bytes": all.len(),
        }))
    }

    fn enforce_inline_limit(&self, o: Outcome) -> Outcome {
        let Outcome::Output(v) = &o else { return o };
        let size = v.to_string().len();
        if size <= self.max_inline_bytes {
            return o;
        }
        Outcome::failed(ErrorKind::PayloadTooLarge, format!(
                "the result is {:.1} MB, over the {:.1} MB that this worker returns inline (RunPod rejects results around 20 MB). \
                 Configure S3 so the audio is uploaded (BUCKET_ENDPOINT_URL/BUCKET_ACCESS_KEY_ID/BUCKET_SECRET_ACCESS_KEY on the endpoint, or s3Config in the request), \
                 ask for a compressed output_format (mp3 or opus), use \"stream\": true, or split the text",
                size as f64 / 1e6,
                self.max_inline_bytes as f64 / 1e6
            ))
    }
}

/// A failure as the platform (and so the client) may see it: internal details are logged with the
/// job id and scrubbed, as the HTTP door does.
fn client_failure(e: ApiError, job: &Job) -> Outcome {
    Outcome::from_api(&higgs_service::errors::for_client(e, Some(&job.id)))
}

/// An internal failure of `job`: `detail` goes to the log only.
fn internal_failure(job: &Job, detail: &dyn std::fmt::Display) -> Outcome {
    Outcome::failed(
        ErrorKind::Internal,
        higgs_service::errors::internal_mid_stream(Some(&job.id), detail),
    )
}

/// Turns encoded audio pieces into stream partials (each under the platform's 1 MB limit), in
/// order; returns how many were sent.
async fn forward_audio_pieces(
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    partials: mpsc::UnboundedSender<Value>,
    format: Option<String>,
    sample_rate: usize,
) -> usize {
    let format = format
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "wav".into())
        .to_lowercase();
    let mut n = 0;
    while let Some(piece) = rx.recv().await {
        for part in piece.chunks(MAX_STREAM_PIECE_BYTES) {
            let _ = partials.send(json!({
                "chunk_index": n,
                "audio_base64": base64::engine::general_purpose::STANDARD.encode(part),
                "format": format,
                "sample_rate": sample_rate,
            }));
            n += 1;
        }
    }
    n
}
