//! A fake RunPod platform speaking the worker protocol (job-take and job-take-batch long polls,
//! job-done, job-stream, ping, job-stop) with fault injection, for tests and local simulation.
//!
//! Like the real platform it keeps the first final result of a job and ignores later ones (a
//! retried POST whose first attempt did arrive); it also counts them so tests can tell retries of
//! the same body from conflicting results.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Which platform call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Take,
    Done,
    Stream,
    Ping,
    Stop,
}

/// What to do to a call instead of answering it normally.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status without processing the call.
    Status(u16),
    /// Close the connection without an answer, without processing the call.
    Drop,
    /// Process the call, then answer only after this long (beyond the client's timeout the
    /// client retries a call that did arrive).
    SlowAck(Duration),
}

/// A final result as the platform received it.
#[derive(Debug, Clone)]
pub struct FinalResult {
    pub body: Value,
    pub is_stream: bool,
    /// Later deliveries for the same job: retries of this body (`same`) or different bodies.
    pub duplicates_same: usize,
    pub duplicates_different: usize,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Value>,
    finals: HashMap<String, FinalResult>,
    streams: HashMap<String, Vec<Value>>,
    pings: Vec<Vec<String>>,
    ping_queries: Vec<HashMap<String, String>>,
    takes: Vec<HashMap<String, String>>,
    stops: VecDeque<String>,
    faults: HashMap<Route, VecDeque<Fault>>,
    bad_auth: usize,
    next_id: usize,
}

#[derive(Clone)]
pub struct FakePlatform {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    api_key: String,
    long_poll: Duration,
    pub addr: SocketAddr,
}

impl FakePlatform {
    /// Starts the platform on an ephemeral localhost port. `long_poll` bounds empty job-take and
    /// job-stop polls.
    pub async fn start(api_key: &str, long_poll: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let p = Self {
            inner: Arc::default(),
            arrived: Arc::new(Notify::new()),
            api_key: api_key.to_string(),
            long_poll,
            addr,
        };
        let app = Router::new()
            .route("/v2/{ep}/job-take/{worker}", get(take))
            .route("/v2/{ep}/job-take-batch/{worker}", get(take))
            .route("/v2/{ep}/job-done/{worker}/{job}", post(done))
            .route("/v2/{ep}/job-stream/{worker}/{job}", post(stream))
            .route("/v2/{ep}/ping/{worker}", get(ping))
            .route("/v2/{ep}/job-stop/{worker}", get(stop))
            .with_state(p.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(p)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn base(&self) -> String {
        format!("http://{}/v2/test-endpoint", self.addr)
    }

    /// The `RUNPOD_*` environment a worker on this platform gets (templates as on RunPod).
    pub fn env(&self, worker_id: &str) -> Vec<(String, String)> {
        let b = self.base();
        vec![
            (
                "RUNPOD_WEBHOOK_GET_JOB".into(),
                format!("{b}/job-take/$ID?gpu=NVIDIA+H100"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT".into(),
                format!("{b}/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+H100"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_STREAM".into(),
                format!("{b}/job-stream/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+H100"),
            ),
            (
                "RUNPOD_WEBHOOK_PING".into(),
                format!("{b}/ping/$RUNPOD_POD_ID?gpu=NVIDIA+H100"),
            ),
            ("RUNPOD_POD_ID".into(), worker_id.into()),
            ("RUNPOD_AI_API_KEY".into(), self.api_key.clone()),
        ]
    }

    /// The same as [`crate::PlatformUrls`].
    pub fn urls(&self, worker_id: &str) -> crate::PlatformUrls {
        let env: HashMap<String, String> = self.env(worker_id).into_iter().collect();
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        crate::PlatformUrls {
            worker_id: worker_id.into(),
            job_take: get("RUNPOD_WEBHOOK_GET_JOB"),
            job_done: get("RUNPOD_WEBHOOK_POST_OUTPUT"),
            job_stream: Some(get("RUNPOD_WEBHOOK_POST_STREAM")),
            ping: Some(get("RUNPOD_WEBHOOK_PING")),
        }
    }

    /// Queues a job; returns its id.
    pub fn push_job(&self, input: Value) -> String {
        let id = {
            let mut g = self.lock();
            g.next_id += 1;
            let id = format!("job-{}", g.next_id);
            g.queue.push_back(json!({"id": id, "input": input}));
            id
        };
        self.arrived.notify_waiters();
        id
    }

    /// Queues a raw job object (for malformed-job tests).
    pub fn push_raw(&self, job: Value) {
        self.lock().queue.push_back(job);
        self.arrived.notify_waiters();
    }

    /// Asks the worker (through job-stop) to stop `job_id`.
    pub fn stop_job(&self, job_id: &str) {
        self.lock().stops.push_back(job_id.into());
        self.arrived.notify_waiters();
    }

    /// The next `n` calls of `route` get `fault`.
    pub fn inject(&self, route: Route, fault: Fault, n: usize) {
        let mut g = self.lock();
        let q = g.faults.entry(route).or_default();
        for _ in 0..n {
            q.push_back(fault.clone());
        }
    }

    pub fn final_result(&self, job_id: &str) -> Option<FinalResult> {
        self.lock().finals.get(job_id).cloned()
    }

    pub fn finals(&self) -> HashMap<String, FinalResult> {
        self.lock().finals.clone()
    }

    pub fn stream(&self, job_id: &str) -> Vec<Value> {
        self.lock().streams.get(job_id).cloned().unwrap_or_default()
    }

    pub fn pings(&self) -> Vec<Vec<String>> {
        self.lock().pings.clone()
    }

    /// Every ping's query, heartbeats and "unhealthy" reports alike.
    pub fn ping_queries(&self) -> Vec<HashMap<String, String>> {
        self.lock().ping_queries.clone()
    }

    pub fn takes(&self) -> Vec<HashMap<String, String>> {
        self.lock().takes.clone()
    }

    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Injected faults not yet triggered.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.values().map(VecDeque::len).sum()
    }

    pub fn bad_auth(&self) -> usize {
        self.lock().bad_auth
    }

    /// Waits until every id has a final result (false on timeout).
    pub async fn wait_finals(&self, ids: &[String], timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ids.iter().all(|id| self.final_result(id).is_some()) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `pred` holds (false on timeout).
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !pred(self) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Applies a pending fault of `route`: `Some(response)` answers now, `Err(delay)` means
    /// "process, then answer after `delay`".
    fn fault(&self, route: Route, headers: &HeaderMap) -> Result<Option<Response>, Duration> {
        let mut g = self.lock();
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(self.api_key.as_str())
        {
            g.bad_auth += 1;
            return Ok(Some(StatusCode::UNAUTHORIZED.into_response()));
        }
        match g.faults.get_mut(&route).and_then(VecDeque::pop_front) {
            None => Ok(None),
            Some(Fault::Status(s)) => Ok(Some(
                StatusCode::from_u16(s)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                    .into_response(),
            )),
            Some(Fault::Drop) => {
                drop(g);
                // Unwinding the connection task closes the socket with no answer (resume_unwind
                // skips the panic hook, so nothing is printed).
                std::panic::resume_unwind(Box::new("fake platform: dropped connection"))
            }
            Some(Fault::SlowAck(d)) => Err(d),
        }
    }
}

async fn take(
    State(p): State<FakePlatform>,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let slow = match p.fault(Route::Take, &headers) {
        Ok(Some(r)) => return r,
        Ok(None) => None,
        Err(d) => Some(d),
    };
    let _ = params;
    let batch: usize = q
        .get("batch_size")
        .and_then(|b| b.parse().ok())
        .unwrap_or(1);
    let is_batch = q.contains_key("batch_size");
    p.lock().takes.push(q);
    let deadline = tokio::time::Instant::now() + p.long_poll;
    let jobs: Vec<Value> = loop {
        let notified = p.arrived.notified();
        {
            let mut g = p.lock();
            if !g.queue.is_empty() {
                let n = batch.min(g.queue.len());
                break g.queue.drain(..n).collect();
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return StatusCode::NO_CONTENT.into_response();
        }
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    if is_batch {
        Json(Value::Array(jobs)).into_response()
    } else {
        match jobs.into_iter().next() {
            Some(j) => Json(j).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        }
    }
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| json!({"unparsable": String::from_utf8_lossy(body)}))
}

async fn done(
    State(p): State<FakePlatform>,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let slow = match p.fault(Route::Done, &headers) {
        Ok(Some(r)) => return r,
        Ok(None) => None,
        Err(d) => Some(d),
    };
    let job = params.get("job").cloned().unwrap_or_default();
    let body = parse(&body);
    let is_stream = q.get("isStream").map(String::as_str) == Some("true");
    {
        let mut g = p.lock();
        match g.finals.get_mut(&job) {
            Some(f) if f.body == body => f.duplicates_same += 1,
            Some(f) => f.duplicates_different += 1,
            None => {
                g.finals.insert(
                    job,
                    FinalResult {
                        body,
                        is_stream,
                        duplicates_same: 0,
                        duplicates_different: 0,
                    },
                );
            }
        }
    }
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    StatusCode::OK.into_response()
}

async fn stream(
    State(p): State<FakePlatform>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let slow = match p.fault(Route::Stream, &headers) {
        Ok(Some(r)) => return r,
        Ok(None) => None,
        Err(d) => Some(d),
    };
    if body.len() > 1_000_000 {
        // The platform's documented per-chunk limit.
        return (StatusCode::BAD_REQUEST, "stream chunk over 1 MB").into_response();
    }
    let job = params.get("job").cloned().unwrap_or_default();
    let v = parse(&body);
    {
        let mut g = p.lock();
        let s = g.streams.entry(job).or_default();
        // A retried chunk whose first attempt arrived is the same body again: keep one.
        if s.last() != Some(&v) {
            s.push(v);
        }
    }
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    StatusCode::OK.into_response()
}

async fn ping(
    State(p): State<FakePlatform>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Ok(Some(r)) = p.fault(Route::Ping, &headers) {
        return r;
    }
    let ids = q
        .get("job_id")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let mut g = p.lock();
    if q.get("status").map(String::as_str) != Some("unhealthy") {
        g.pings.push(ids);
    }
    g.ping_queries.push(q);
    StatusCode::OK.into_response()
}

async fn stop(State(p): State<FakePlatform>, headers: HeaderMap) -> Response {
    if let Ok(Some(r)) = p.fault(Route::Stop, &headers) {
        return r;
    }
    let deadline = tokio::time::Instant::now() + p.long_poll;
    loop {
        let notified = p.arrived.notified();
        {
            let mut g = p.lock();
            if !g.stops.is_empty() {
                let ids: Vec<String> = g.stops.drain(..).collect();
                return Json(json!({ "jobsToStop": ids })).into_response();
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}
