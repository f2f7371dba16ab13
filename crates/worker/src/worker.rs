//! The production loop: take jobs (up to `concurrency` at once, all fed to the batching engine),
//! stream partials in order, post exactly one final result per job, heartbeat with the ids in
//! progress, stop jobs the platform cancels, and drain on SIGTERM.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::job::{Job, JobContext, Outcome};
use crate::platform::{PlatformClient, PlatformError, Taken};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs held at once (the SDK's `concurrency_modifier`); all run in the batching engines.
    /// `None`: the KV slots of the engines in rotation, read again before each job-take (so an
    /// engine taken out of rotation lowers it).
    pub concurrency: Option<usize>,
    /// Every result carries `stopPod: true` and the worker exits after its first job.
    pub refresh_worker: bool,
    /// `RUNPOD_PING_INTERVAL` (the SDK's default is 10 s).
    pub ping_interval: Duration,
    /// After SIGTERM: how long running jobs may still finish; the rest fail with a retry hint.
    pub drain_timeout: Duration,
    /// Least time between two empty job-stop polls (the SDK waits 1 s).
    pub stop_poll_min_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: None,
            refresh_worker: false,
            ping_interval: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            stop_poll_min_interval: Duration::from_secs(1),
        }
    }
}

/// Why the loop ended, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub jobs_finished: usize,
    pub reason: ExitReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// SIGTERM / ctrl-c (or the caller's shutdown future).
    Shutdown,
    /// `refresh_worker`: one job done.
    Refresh,
    /// The engine stopped (fatal error); the platform is told to recycle the worker.
    EngineStopped,
}

/// Results of finished jobs, kept so a job the platform hands out again after its result was
/// posted is answered with the same body and never run twice (an unseeded job would get a
/// different result). Bounded by count and bytes; the oldest go first. Ids whose body was evicted
/// are remembered (up to [`FinishedJobs::MAX_IDS`]) and answered with an `already_finished` error
/// instead of a second run.
#[derive(Default)]
struct FinishedJobs {
    inner: Mutex<FinishedInner>,
}

#[derive(Default)]
struct FinishedInner {
    bodies: HashMap<String, (Value, bool, usize)>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
    evicted: std::collections::HashSet<String>,
    evicted_order: std::collections::VecDeque<String>,
}

/// What a re-delivered job is answered with.
enum Finished {
    /// The posted body and its `isStream`.
    Body(Value, bool),
    /// Finished long ago; its body is no longer kept.
    Evicted,
}

impl FinishedJobs {
    const MAX_RESULTS: usize = 256;
    const MAX_BYTES: usize = 64 * 1024 * 1024;
    const MAX_IDS: usize = 65_536;

    fn lock(&self) -> std::sync::MutexGuard<'_, FinishedInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Option<Finished> {
        let g = self.lock();
        if let Some((body, is_stream, _)) = g.bodies.get(id) {
            return Some(Finished::Body(body.clone(), *is_stream));
        }
        g.evicted.contains(id).then_some(Finished::Evicted)
    }

    fn insert(&self, id: &str, body: Value, is_stream: bool) {
        let size = body.to_string().len();
        let mut g = self.lock();
        if g.bodies.contains_key(id) {
            return;
        }
        g.bytes += size;
        g.bodies.insert(id.to_string(), (body, is_stream, size));
        g.order.push_back(id.to_string());
        while g.order.len() > Self::MAX_RESULTS || (g.bytes > Self::MAX_BYTES && g.order.len() > 1)
        {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some((_, _, n)) = g.bodies.remove(&old) {
                g.bytes -= n;
            }
            if g.evicted.insert(old.clone()) {
                g.evicted_order.push_back(old);
            }
            while g.evicted_order.len() > Self::MAX_IDS {
                if let Some(gone) = g.evicted_order.pop_front() {
                    g.evicted.remove(&gone);
                }
            }
        }
    }
}

/// Jobs in progress: id → the channel that stops it.
#[derive(Default)]
struct Tracker {
    jobs: Mutex<HashMap<String, Option<oneshot::Sender<String>>>>,
    freed: Notify,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<oneshot::Sender<String>>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single operations).
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// False when the id is already tracked (the platform handed out a job twice).
    fn insert(&self, id: &str, stop: oneshot::Sender<String>) -> bool {
        let mut m = self.lock();
        if m.contains_key(id) {
            return false;
        }
        m.insert(id.to_string(), Some(stop));
        true
    }

    fn stop(&self, id: &str, why: &str) -> bool {
        match self.lock().get_mut(id).and_then(Option::take) {
            Some(tx) => tx.send(why.to_string()).is_ok(),
            None => false,
        }
    }

    fn stop_all(&self, why: &str) {
        for tx in self.lock().values_mut().filter_map(Option::take) {
            let _ = tx.send(why.to_string());
        }
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
        self.freed.notify_waiters();
    }
}

/// Runs the worker until `shutdown` resolves (then drains), `refresh_worker` finished a job, or
/// the engine stopped.
pub async fn run(
    ctx: JobContext,
    client: PlatformClient,
    cfg: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> WorkerReport {
    let tracker = Arc::new(Tracker::default());
    let finished_jobs = Arc::new(FinishedJobs::default());
    let (done_tx, done_rx) = watch::channel(false);
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<ExitReason>();

    let ping = tokio::spawn(ping_loop(
        client.clone(),
        tracker.clone(),
        cfg.ping_interval,
        done_rx.clone(),
    ));
    let stops = tokio::spawn(stop_loop(
        client.clone(),
        tracker.clone(),
        cfg.stop_poll_min_interval,
        done_rx.clone(),
    ));

    let mut tasks = tokio::task::JoinSet::new();
    let mut failures = 0u32;
    tokio::pin!(shutdown);
    let reason = loop {
        if let Ok(r) = exit_rx.try_recv() {
            break r;
        }
        // Created before the count is read, so a job ending in between still wakes us
        // (`notify_waiters` reaches every `Notified` created before the call).
        let freed = tracker.freed.notified();
        let limit = cfg
            .concurrency
            .unwrap_or_else(|| ctx.service.engine.serving_slots())
            .max(1);
        let want = limit.saturating_sub(tracker.len());
        if want == 0 {
            tokio::select! {
                _ = freed => continue,
                r = exit_rx.recv() => break r.unwrap_or(ExitReason::Shutdown),
                _ = &mut shutdown => break ExitReason::Shutdown,
            }
        }
        let in_progress = tracker.len() > 0;
        let taken = tokio::select! {
            t = client.take(in_progress, want) => t,
            r = exit_rx.recv() => break r.unwrap_or(ExitReason::Shutdown),
            _ = &mut shutdown => break ExitReason::Shutdown,
        };
        let wait = match taken {
            Ok(Taken::Jobs(jobs)) => {
                failures = 0;
                for job in jobs {
                    if let Some(f) = finished_jobs.get(&job.id) {
                        // Handed out again after its result was posted: answer, never re-run.
                        tracing::warn!(
                            "job {} handed out again after it finished; answering with its result",
                            job.id
                        );
                        let (body, is_stream) = match f {
                            Finished::Body(b, s) => (b, s),
                            Finished::Evicted => (Outcome::error("already_finished", "this job already finished on this worker and its result was posted; it is not run twice", 409).to_body(false), false),
                        };
                        let client = client.clone();
                        tasks.spawn(async move {
                            if let Err(e) = client.post_final(&job.id, &body, is_stream).await {
                                tracing::error!(
                                    "job {}: could not post its stored result again: {e}",
                                    job.id
                                );
                            }
                        });
                        continue;
                    }
                    let (stop_tx, stop_rx) = oneshot::channel();
                    if !tracker.insert(&job.id, stop_tx) {
                        tracing::warn!("job {} handed out again while running; ignored", job.id);
                        continue;
                    }
                    tracing::info!("job {} started", job.id);
                    tasks.spawn(run_job(
                        ctx.clone(),
                        client.clone(),
                        tracker.clone(),
                        finished_jobs.clone(),
                        job,
                        stop_rx,
                        cfg.refresh_worker,
                        finished.clone(),
                        exit_tx.clone(),
                    ));
                }
                None
            }
            Ok(Taken::Malformed(bad)) => {
                for (id, why) in bad {
                    tracing::warn!("job {id}: {why}");
                    let body =
                        Outcome::failed(higgs_api::ErrorKind::BadRequest, why).to_body(false);
                    if let Err(e) = client.post_final(&id, &body, false).await {
                        tracing::error!("job {id}: could not post its failure: {e}");
                    }
                }
                None
            }
            Err(PlatformError::RateLimited) => Some(client.cfg.rate_limited_wait),
            Err(e) => {
                failures += 1;
                let d = client.cfg.backoff.delay(failures.min(8));
                tracing::warn!("job-take failed ({e}); next try in {d:?}");
                Some(d)
            }
        };
        if let Some(d) = wait {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = &mut shutdown => break ExitReason::Shutdown,
            }
        }
    };
    tracing::info!(
        "worker stopping ({reason:?}): {} jobs still running",
        tracker.len()
    );
    // Drain: running jobs may finish within the timeout; the rest end with a retry hint.
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracker.stop_all(
            "the worker was shut down before the job finished (SIGTERM / scale-down); retry the job",
        );
        while tasks.join_next().await.is_some() {}
    }
    let _ = done_tx.send(true);
    let _ = ping.await;
    stops.abort();
    WorkerReport {
        jobs_finished: finished.load(std::sync::atomic::Ordering::SeqCst),
        reason,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    ctx: JobContext,
    client: PlatformClient,
    tracker: Arc<Tracker>,
    finished_jobs: Arc<FinishedJobs>,
    job: Job,
    stop: oneshot::Receiver<String>,
    refresh_worker: bool,
    finished: Arc<std::sync::atomic::AtomicUsize>,
    exit: mpsc::UnboundedSender<ExitReason>,
) {
    let (ptx, mut prx) = mpsc::unbounded_channel::<Value>();
    // Partials go out one at a time, in order, before the final result.
    let streamer = {
        let client = client.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(p) = prx.recv().await {
                if let Err(e) = client.post_stream(&id, &p).await {
                    tracing::error!("job {id}: a streamed chunk was lost: {e}");
                }
                n += 1;
            }
            n
        })
    };
    let t0 = std::time::Instant::now();
    let outcome = tokio::select! {
        o = ctx.execute(&job, ptx) => o,
        why = stop => Outcome::error("cancelled", why.unwrap_or_else(|_| "stopped".into()), 499),
    };
    let streamed = streamer.await.unwrap_or(0);
    let engine_dead = ctx.service.engine.is_stopped();
    let stop_pod = refresh_worker || engine_dead;
    let body = outcome.to_body(stop_pod);
    // Stored before it is posted: a re-delivery racing the post is answered with this body.
    finished_jobs.insert(&job.id, body.clone(), streamed > 0);
    match client.post_final(&job.id, &body, streamed > 0).await {
        Ok(()) => tracing::info!(
            "job {} {} in {:.2}s ({} streamed chunks)",
            job.id,
            if outcome.is_error() { "failed" } else { "done" },
            t0.elapsed().as_secs_f64(),
            streamed
        ),
        Err(e) => tracing::error!(
            "job {}: the final result could not be delivered: {e}",
            job.id
        ),
    }
    finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tracker.remove(&job.id);
    if engine_dead {
        let _ = exit.send(ExitReason::EngineStopped);
    } else if refresh_worker {
        let _ = exit.send(ExitReason::Refresh);
    }
}

async fn ping_loop(
    client: PlatformClient,
    tracker: Arc<Tracker>,
    interval: Duration,
    mut done: watch::Receiver<bool>,
) {
    loop {
        client.ping(&tracker.ids(), interval).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = done.changed() => return,
        }
    }
}

async fn stop_loop(
    client: PlatformClient,
    tracker: Arc<Tracker>,
    min_interval: Duration,
    mut done: watch::Receiver<bool>,
) {
    if client.cfg.urls.job_stop().is_none() {
        return;
    }
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let wait = match client.poll_stop().await {
            Ok(ids) => {
                failures = 0;
                for id in &ids {
                    if tracker.stop(id, "the job was cancelled (job-stop from the platform)") {
                        tracing::info!("job {id}: stopped by the platform");
                    }
                }
                if ids.is_empty() {
                    min_interval.saturating_sub(started.elapsed())
                } else {
                    Duration::ZERO
                }
            }
            Err(PlatformError::RateLimited) => client.cfg.rate_limited_wait,
            Err(e) => {
                failures += 1;
                tracing::debug!("job-stop poll failed: {e}");
                client.cfg.backoff.delay(failures.min(8))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = done.changed() => return,
        }
    }
}
