//! The local test API (`higgs-serve runpod --rp-serve-api`): the public RunPod queue API in one
//! process, really executing jobs on the engine — unlike the SDK's `--rp_serve_api`, whose `/run`
//! only stashes the job. The official `runpod` client works against it (`runpod.Endpoint` with
//! `runpod.endpoint_url_base` pointed here).
//!
//! Routes, at the root and under `/v2/{endpoint_id}`: `POST /run`, `POST /runsync[?wait=ms]`,
//! `GET|POST /status/{id}`, `GET|POST /stream/{id}`, `POST /cancel/{id}`, `POST /retry/{id}`,
//! `POST /purge-queue`, `GET /health`. Finished jobs are kept 30 minutes, like `/run` results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::job::{Job, JobContext, Outcome};

/// How long finished jobs stay queryable.
pub const RESULT_RETENTION: Duration = Duration::from_secs(30 * 60);
/// `/runsync` waits this long by default (the platform's 90 s), at most 300 s via `?wait=`.
pub const RUNSYNC_WAIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InQueue,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

struct LocalJob {
    job: Job,
    status: Status,
    outcome: Option<Outcome>,
    /// Partials not yet fetched through `/stream`.
    pending_stream: Vec<Value>,
    created: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
    stop: Option<oneshot::Sender<()>>,
    done: watch::Sender<bool>,
    retried: bool,
}

impl LocalJob {
    fn view(&self) -> Value {
        let delay = self
            .started
            .unwrap_or_else(Instant::now)
            .duration_since(self.created);
        let exec = match (self.started, self.finished) {
            (Some(s), Some(f)) => f.duration_since(s),
            (Some(s), None) => s.elapsed(),
            _ => Duration::ZERO,
        };
        let mut v = json!({
            "id": self.job.id,
            "status": self.status.as_str(),
            "delayTime": delay.as_millis() as u64,
            "executionTime": exec.as_millis() as u64,
            "workerId": "local",
        });
        match &self.outcome {
            Some(Outcome::Output(o)) => v["output"] = o.clone(),
            Some(Outcome::Error(e)) => v["error"] = json!(e),
            None => {}
        }
        v
    }
}

#[derive(Clone)]
struct LocalApi {
    ctx: JobContext,
    jobs: Arc<Mutex<HashMap<String, LocalJob>>>,
    /// Jobs in submission order; a dispatcher starts them as slots free up (FIFO, like a queue).
    queue: mpsc::UnboundedSender<(Job, oneshot::Receiver<()>)>,
    api_key: Option<String>,
}

impl LocalApi {
    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalJob>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sweep(&self) {
        self.jobs()
            .retain(|_, j| j.finished.is_none_or(|f| f.elapsed() < RESULT_RETENTION));
    }
}

/// The router; `concurrency` jobs run at once (the rest wait IN_QUEUE); `api_key` = require
/// `Authorization: Bearer KEY` (the `runpod` client always sends its key).
pub fn router(ctx: JobContext, concurrency: usize, api_key: Option<String>) -> Router {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Job, oneshot::Receiver<()>)>();
    let api = LocalApi {
        ctx,
        jobs: Arc::default(),
        queue,
        api_key,
    };
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let dispatcher = api.clone();
    tokio::spawn(async move {
        while let Some((job, stop)) = queued.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(execute(dispatcher.clone(), job, stop, permit));
        }
    });
    let routes = Router::new()
        .route("/run", post(run))
        .route("/runsync", post(runsync))
        .route("/status/{id}", get(status).post(status))
        .route("/stream/{id}", get(stream).post(stream))
        .route("/cancel/{id}", post(cancel))
        .route("/retry/{id}", post(retry))
        .route("/purge-queue", post(purge))
        .route("/health", get(health));
    let nested = routes.clone();
    Router::new()
        .merge(routes)
        .nest("/v2/{endpoint_id}", nested)
        .fallback(|| async {
            err(StatusCode::NOT_FOUND, "no such route: the local test API serves /run, /runsync, /status/{id}, /stream/{id}, /cancel/{id}, /retry/{id}, /purge-queue, /health (also under /v2/{endpoint_id}/)")
        })
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api)
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

async fn auth(
    State(api): State<LocalApi>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(key) = &api.api_key {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
        if given != Some(key.as_str()) {
            return err(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key: send Authorization: Bearer <key>",
            );
        }
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct RunBody {
    input: Option<Value>,
    webhook: Option<String>,
    #[serde(rename = "s3Config")]
    s3_config: Option<higgs_storage::RequestS3Config>,
}

/// The request body, or why it is refused (a 400).
fn parse_body(body: &[u8]) -> Result<RunBody, String> {
    let b: RunBody = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be JSON like {{\"input\": {{...}}}}: {e}"))?;
    match &b.input {
        Some(Value::Object(_)) => Ok(b),
        _ => Err(
            "the body needs an \"input\" object (e.g. {\"input\": {\"transcript\": \"Hello\"}})"
                .into(),
        ),
    }
}

/// Refuses a `webhook` the egress policy does not allow (non-http(s), loopback, private,
/// link-local: SSRF), before the job runs.
fn check_webhook(api: &LocalApi, b: RunBody) -> Result<RunBody, String> {
    if let Some(w) = &b.webhook {
        let url = reqwest::Url::parse(w).map_err(|e| {
            format!(
                "webhook {:?} is not a URL: {e}",
                w.chars().take(200).collect::<String>()
            )
        })?;
        api.ctx
            .egress
            .check_url(&url)
            .map_err(|e| format!("webhook refused: {e}"))?;
    }
    Ok(b)
}

/// Registers a job and starts it (it waits for a slot IN_QUEUE).
fn submit(api: &LocalApi, b: RunBody) -> (String, watch::Receiver<bool>) {
    api.sweep();
    let id = format!("local-{}", uuid::Uuid::new_v4());
    let job = Job {
        id: id.clone(),
        input: b.input.unwrap_or(Value::Null),
        s3_config: b.s3_config,
        webhook: b.webhook,
    };
    let (done_tx, done_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel();
    api.jobs().insert(
        id.clone(),
        LocalJob {
            job: job.clone(),
            status: Status::InQueue,
            outcome: None,
            pending_stream: Vec::new(),
            created: Instant::now(),
            started: None,
            finished: None,
            stop: Some(stop_tx),
            done: done_tx,
            retried: false,
        },
    );
    let _ = api.queue.send((job, stop_rx));
    (id, done_rx)
}

async fn execute(
    api: LocalApi,
    job: Job,
    stop: oneshot::Receiver<()>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let id = job.id.clone();
    let run = async {
        {
            let mut jobs = api.jobs();
            match jobs.get_mut(&id) {
                Some(j) if j.status == Status::InQueue => {
                    j.status = Status::InProgress;
                    j.started = Some(Instant::now());
                }
                // Cancelled or purged while queued.
                _ => return Outcome::error("cancelled", "the job was cancelled", 499),
            }
        }
        let (ptx, mut prx) = mpsc::unbounded_channel::<Value>();
        let collect = async {
            while let Some(p) = prx.recv().await {
                if let Some(j) = api.jobs().get_mut(&id) {
                    j.pending_stream.push(p);
                }
            }
        };
        let (o, ()) = tokio::join!(api.ctx.execute(&job, ptx), collect);
        o
    };
    let (outcome, cancelled) = tokio::select! {
        o = run => (o, false),
        _ = stop => (Outcome::error("cancelled", "the job was cancelled", 499), true),
    };
    let webhook = {
        let mut jobs = api.jobs();
        let Some(j) = jobs.get_mut(&id) else { return };
        j.status = if cancelled {
            Status::Cancelled
        } else if outcome.is_error() {
            Status::Failed
        } else {
            Status::Completed
        };
        j.started.get_or_insert_with(Instant::now);
        j.finished = Some(Instant::now());
        j.outcome = Some(outcome);
        let _ = j.done.send(true);
        j.job.webhook.clone().map(|w| (w, j.view()))
    };
    if let Some((url, body)) = webhook {
        // The platform POSTs the job's result to the webhook (expects 200; 2 more tries 10 s apart).
        // Names resolve through the egress guard; redirects are not followed.
        let client = match api.ctx.egress.client(reqwest::Client::builder()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("webhook client for {id}: {e}");
                return;
            }
        };
        for attempt in 0..3 {
            match client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => break,
                r => {
                    tracing::warn!("webhook {url} for {id}: {:?}", r.map(|r| r.status()));
                    if attempt < 2 {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                }
            }
        }
    }
}

async fn run(State(api): State<LocalApi>, body: axum::body::Bytes) -> Response {
    let b = match parse_body(&body).and_then(|b| check_webhook(&api, b)) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let (id, _) = submit(&api, b);
    Json(json!({"id": id, "status": Status::InQueue.as_str()})).into_response()
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn runsync(
    State(api): State<LocalApi>,
    Query(q): Query<WaitQuery>,
    body: axum::body::Bytes,
) -> Response {
    let b = match parse_body(&body).and_then(|b| check_webhook(&api, b)) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let wait = q
        .wait
        .map(|ms| Duration::from_millis(ms.clamp(1000, 300_000)))
        .unwrap_or(RUNSYNC_WAIT);
    let (id, mut done) = submit(&api, b);
    let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
    // Not done in time: the client gets the id to poll, as on the platform.
    view(&api, &id)
}

fn view(api: &LocalApi, id: &str) -> Response {
    match api.jobs().get(id) {
        Some(j) => Json(j.view()).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            format!("job {id} not found (unknown, or its result expired)"),
        ),
    }
}

async fn status(State(api): State<LocalApi>, Path(p): Path<HashMap<String, String>>) -> Response {
    api.sweep();
    view(&api, p.get("id").map(String::as_str).unwrap_or_default())
}

async fn stream(State(api): State<LocalApi>, Path(p): Path<HashMap<String, String>>) -> Response {
    let id = p.get("id").cloned().unwrap_or_default();
    let mut jobs = api.jobs();
    let Some(j) = jobs.get_mut(&id) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("job {id} not found (unknown, or its result expired)"),
        );
    };
    let chunks: Vec<Value> = j
        .pending_stream
        .drain(..)
        .map(|o| json!({ "output": o }))
        .collect();
    let mut v = json!({"id": id, "status": j.status.as_str(), "stream": chunks});
    if let Some(Outcome::Error(e)) = &j.outcome {
        v["error"] = json!(e);
    }
    Json(v).into_response()
}

async fn cancel(State(api): State<LocalApi>, Path(p): Path<HashMap<String, String>>) -> Response {
    let id = p.get("id").cloned().unwrap_or_default();
    let mut jobs = api.jobs();
    let Some(j) = jobs.get_mut(&id) else {
        return err(StatusCode::NOT_FOUND, format!("job {id} not found"));
    };
    if !j.status.is_final() {
        if let Some(tx) = j.stop.take() {
            let _ = tx.send(());
        }
        j.status = Status::Cancelled;
    }
    Json(json!({"id": id, "status": j.status.as_str()})).into_response()
}

async fn retry(State(api): State<LocalApi>, Path(p): Path<HashMap<String, String>>) -> Response {
    let id = p.get("id").cloned().unwrap_or_default();
    let job = {
        let mut jobs = api.jobs();
        let Some(j) = jobs.get_mut(&id) else {
            return err(StatusCode::NOT_FOUND, format!("job {id} not found"));
        };
        if j.status != Status::Failed {
            return err(
                StatusCode::BAD_REQUEST,
                format!(
                    "only FAILED jobs can be retried; {id} is {}",
                    j.status.as_str()
                ),
            );
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, _) = watch::channel(false);
        j.status = Status::InQueue;
        j.outcome = None;
        j.pending_stream.clear();
        j.created = Instant::now();
        j.started = None;
        j.finished = None;
        j.stop = Some(stop_tx);
        j.done = done_tx;
        j.retried = true;
        (j.job.clone(), stop_rx)
    };
    let _ = api.queue.send(job);
    Json(json!({"id": id, "status": Status::InQueue.as_str()})).into_response()
}

async fn purge(State(api): State<LocalApi>) -> Response {
    let mut removed = 0;
    api.jobs().retain(|_, j| {
        let queued = j.status == Status::InQueue;
        if queued {
            removed += 1;
        }
        !queued
    });
    Json(json!({"removed": removed, "status": "completed"})).into_response()
}

async fn health(State(api): State<LocalApi>, _h: HeaderMap) -> Response {
    api.sweep();
    let jobs = api.jobs();
    let count = |s: Status| jobs.values().filter(|j| j.status == s).count();
    let running = count(Status::InProgress);
    let ready = api.ctx.service.is_ready();
    Json(json!({
        "jobs": {
            "completed": count(Status::Completed),
            "failed": count(Status::Failed),
            "inProgress": running,
            "inQueue": count(Status::InQueue),
            "retried": jobs.values().filter(|j| j.retried).count(),
        },
        "workers": {
            "idle": usize::from(ready && running == 0),
            "running": usize::from(ready && running > 0),
            "unhealthy": usize::from(!ready),
        },
    }))
    .into_response()
}

/// `--test-input`: runs one job like the SDK's local test (`id` defaults to `local_test`) and
/// returns the job-done body; the caller exits 1 when it has `error`.
pub async fn run_test_input(ctx: &JobContext, test_input: &Value) -> Result<Value, String> {
    let Some(obj) = test_input.as_object() else {
        return Err("the test input must be a JSON object with an \"input\" key".into());
    };
    let Some(input) = obj.get("input") else {
        return Err(
            "the test input needs an \"input\" key, e.g. {\"input\": {\"transcript\": \"Hello\"}}"
                .into(),
        );
    };
    let job = Job {
        id: obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("local_test")
            .to_string(),
        input: input.clone(),
        s3_config: obj
            .get("s3Config")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("s3Config: {e}"))?,
        webhook: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (outcome, partials) = tokio::join!(ctx.execute(&job, tx), async {
        let mut n = 0usize;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let mut body = outcome.to_body(false);
    if partials > 0 {
        body["streamed_chunks"] = json!(partials);
    }
    Ok(body)
}
