//! Several engines behind one admission front: data-parallel replicas (one model, codec and
//! engine thread per GPU; several CPU engines in tests) that share only the voice library. The
//! doors submit to the pool as they would to one [`EngineHandle`]; the pool sends each request to
//! the least-loaded engine in rotation and takes an engine that failed out of it, so the others
//! keep serving.
//!
//! Least loaded: an engine that is ready before one still warming up, then most free KV slots,
//! then fewest waiting requests, ties taken in turn (round robin). Loads come from each engine's
//! admission counter, which a submission moves at once, so a burst spreads over the engines
//! instead of piling onto the one that looked idle a step ago. Only when the chosen engine refuses
//! (its queue is full, or it stopped meanwhile) is the next one tried; the request is refused when
//! every engine refused it.
//!
//! Out of rotation, for good (restart the process to bring it back): an engine that failed to
//! start (the caller hands the pool its error), whose thread stopped without the pool shutting
//! down, or whose steps failed [`PoolPolicy::max_step_failures_in_a_row`] times in a row (a
//! device error that does not go away). It is logged once, and reported by [`EnginePool::statuses`]
//! and [`EnginePool::record_metrics`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::engine::{EngineHandle, EngineStats, Load, RequestStream};
use crate::request::{GenerateRequest, SubmitError};

/// When an engine leaves the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPolicy {
    /// Steps failing in a row (model forward or sampling errors) after which an engine is taken
    /// out of rotation: one failed step is one batch's bad luck, several in a row a broken device.
    pub max_step_failures_in_a_row: u64,
}

impl PoolPolicy {
    /// Why an engine in this condition leaves the rotation (`None`: it stays).
    pub fn failure(&self, stopped: bool, step_failures_in_a_row: u64) -> Option<String> {
        if stopped {
            return Some("its engine thread stopped".into());
        }
        (step_failures_in_a_row >= self.max_step_failures_in_a_row.max(1)).then(|| {
            format!("{step_failures_in_a_row} engine steps failed in a row (device errors)")
        })
    }
}

impl Default for PoolPolicy {
    fn default() -> Self {
        Self {
            max_step_failures_in_a_row: 3,
        }
    }
}

/// One engine's state as the pool sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// Warming up; it takes requests only when every ready engine refused one.
    Loading,
    Serving,
    /// Out of rotation (see the module docs); its error says why.
    Failed,
    /// The pool is shutting down.
    Stopping,
}

impl EngineState {
    /// The word health reports and metric labels use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Serving => "serving",
            Self::Failed => "failed",
            Self::Stopping => "stopping",
        }
    }

    /// Whether the pool may send it requests.
    pub fn in_rotation(self) -> bool {
        matches!(self, Self::Loading | Self::Serving)
    }

    pub const ALL: [EngineState; 4] = [Self::Loading, Self::Serving, Self::Failed, Self::Stopping];
}

/// The pool's state, from its engines'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// No engine serves yet; at least one still warms up (others may have failed).
    Loading,
    /// At least one engine serves and none failed (others may still warm up).
    Ready,
    /// At least one engine serves, at least one failed.
    Degraded,
    /// Every engine failed.
    Failed,
    Stopping,
}

impl PoolState {
    /// From the engines' states (`shutting_down` wins).
    pub fn of(states: &[EngineState], shutting_down: bool) -> Self {
        let has = |s: EngineState| states.contains(&s);
        if shutting_down {
            Self::Stopping
        } else if has(EngineState::Serving) && has(EngineState::Failed) {
            Self::Degraded
        } else if has(EngineState::Serving) {
            Self::Ready
        } else if has(EngineState::Loading) {
            Self::Loading
        } else if has(EngineState::Failed) {
            Self::Failed
        } else {
            Self::Stopping
        }
    }
}

/// One engine as health reports show it.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    /// Its index in the pool (its metrics' `engine` label).
    pub index: usize,
    pub device: String,
    pub state: EngineState,
    /// Why it is out of rotation.
    pub error: Option<String>,
    /// Its counters (all zero for an engine that never started).
    pub stats: EngineStats,
}

/// What the caller built for one device: a started engine, or why it could not start one.
pub struct PoolMember {
    pub device: String,
    pub engine: Result<EngineHandle, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no engine started: {0}")]
    NoEngine(String),
}

struct Member {
    device: String,
    handle: Option<EngineHandle>,
    /// Set once, when it leaves the rotation.
    failure: OnceLock<String>,
}

struct Inner {
    members: Vec<Member>,
    /// Where the next tie-break starts (round robin).
    next: AtomicUsize,
    shutting_down: AtomicBool,
    policy: PoolPolicy,
    sample_rate: usize,
    model_info: String,
}

/// N engines behind one admission front (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct EnginePool {
    inner: Arc<Inner>,
}

impl EnginePool {
    /// A pool of `members` (index = position); at least one must have started.
    pub fn new(members: Vec<PoolMember>, policy: PoolPolicy) -> Result<Self, PoolError> {
        let Some(first) = members.iter().find_map(|m| m.engine.as_ref().ok()) else {
            let why: Vec<String> = members
                .iter()
                .filter_map(|m| {
                    m.engine
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {e}", m.device))
                })
                .collect();
            return Err(PoolError::NoEngine(if why.is_empty() {
                "no device given".into()
            } else {
                why.join("; ")
            }));
        };
        let (sample_rate, model_info) = (first.sample_rate(), first.model_info().to_string());
        let members = members
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let failure = OnceLock::new();
                let handle = match m.engine {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::error!(engine = i, device = %m.device, "engine out of rotation: it did not start: {e}");
                        let _ = failure.set(format!("did not start: {e}"));
                        None
                    }
                };
                Member {
                    device: m.device,
                    handle,
                    failure,
                }
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                members,
                next: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                policy,
                sample_rate,
                model_info,
            }),
        })
    }

    /// A pool of one engine (what `synth`-like callers and single-device serving use).
    pub fn single(h: EngineHandle, device: impl Into<String>) -> Self {
        let members = vec![PoolMember {
            device: device.into(),
            engine: Ok(h),
        }];
        match Self::new(members, PoolPolicy::default()) {
            Ok(p) => p,
            // `new` fails only without a started engine, and this one has one.
            Err(e) => unreachable!("{e}"),
        }
    }

    /// Engines in the pool, failed ones included.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    /// Engine `i`'s handle (`None` when it never started).
    pub fn engine(&self, i: usize) -> Option<&EngineHandle> {
        self.inner.members.get(i)?.handle.as_ref()
    }

    /// Engine `i`'s state; notices (and logs, once) that it failed.
    fn state_of(&self, i: usize) -> EngineState {
        let m = &self.inner.members[i];
        if m.failure.get().is_some() {
            return EngineState::Failed;
        }
        let Some(h) = &m.handle else {
            return EngineState::Failed;
        };
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return EngineState::Stopping;
        }
        let why = if h.is_stopped() {
            self.inner.policy.failure(true, 0)
        } else {
            self.inner
                .policy
                .failure(false, h.stats().step_failures_in_a_row)
        };
        if let Some(why) = why {
            if m.failure.set(why.clone()).is_ok() {
                tracing::error!(engine = i, device = %m.device, "engine taken out of rotation: {why}");
            }
            return EngineState::Failed;
        }
        if h.is_ready() {
            EngineState::Serving
        } else {
            EngineState::Loading
        }
    }

    /// Submits to the least-loaded engine in rotation (see the module docs).
    pub fn submit(&self, req: GenerateRequest) -> Result<RequestStream, SubmitError> {
        let n = self.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut order: Vec<(bool, Load, usize, usize)> = (0..n)
            .filter_map(|i| {
                let state = self.state_of(i);
                let h = self.inner.members[i].handle.as_ref()?;
                state.in_rotation().then(|| {
                    (
                        state != EngineState::Serving,
                        h.load(),
                        (i + n - start) % n,
                        i,
                    )
                })
            })
            .collect();
        order.sort_by_key(|&(warming, load, turn, _)| {
            (
                warming,
                std::cmp::Reverse(load.free_slots),
                load.queued,
                turn,
            )
        });
        let mut req = req;
        let (mut queued, mut limit, mut overloaded) = (0usize, 0usize, false);
        for (_, _, _, i) in order {
            let Some(h) = self.inner.members[i].handle.as_ref() else {
                continue;
            };
            match h.try_submit_returning(req) {
                Ok(s) => return Ok(s),
                Err((e, back)) => {
                    if let SubmitError::Overloaded {
                        queued: q,
                        limit: l,
                    } = e
                    {
                        overloaded = true;
                        queued += q;
                        limit += l;
                    }
                    req = *back;
                }
            }
        }
        if overloaded {
            metrics::counter!("higgs_requests_rejected_total", "reason" => "overloaded")
                .increment(1);
            return Err(SubmitError::Overloaded { queued, limit });
        }
        Err(SubmitError::Stopped)
    }

    /// Every engine's state, device, error and counters.
    pub fn statuses(&self) -> Vec<EngineStatus> {
        (0..self.len())
            .map(|i| {
                let state = self.state_of(i);
                let m = &self.inner.members[i];
                EngineStatus {
                    index: i,
                    device: m.device.clone(),
                    state,
                    error: m.failure.get().cloned(),
                    stats: m.handle.as_ref().map(|h| h.stats()).unwrap_or_default(),
                }
            })
            .collect()
    }

    pub fn state(&self) -> PoolState {
        let states: Vec<EngineState> = (0..self.len()).map(|i| self.state_of(i)).collect();
        PoolState::of(&states, self.inner.shutting_down.load(Ordering::SeqCst))
    }

    /// At least one engine serves.
    pub fn is_ready(&self) -> bool {
        matches!(self.state(), PoolState::Ready | PoolState::Degraded)
    }

    /// No engine is in rotation any more (all failed, or the pool shuts down).
    pub fn is_stopped(&self) -> bool {
        matches!(self.state(), PoolState::Failed | PoolState::Stopping)
    }

    /// Blocks until no engine is warming up or `timeout` passed; true when one serves then.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<EngineState> = (0..self.len()).map(|i| self.state_of(i)).collect();
            if !states.contains(&EngineState::Loading) || Instant::now() >= deadline {
                return states.contains(&EngineState::Serving);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The counters of every engine that started, added up.
    pub fn stats(&self) -> EngineStats {
        let mut total = EngineStats::default();
        for h in self.inner.members.iter().filter_map(|m| m.handle.as_ref()) {
            total.add(&h.stats());
        }
        total
    }

    /// KV slots of the engines in rotation: the requests the pool runs at once.
    pub fn serving_slots(&self) -> usize {
        (0..self.len())
            .filter(|&i| self.state_of(i).in_rotation())
            .filter_map(|i| self.inner.members[i].handle.as_ref())
            .map(|h| h.load().slots)
            .sum()
    }

    pub fn sample_rate(&self) -> usize {
        self.inner.sample_rate
    }

    pub fn model_info(&self) -> &str {
        &self.inner.model_info
    }

    /// Every engine stops accepting requests; running ones finish.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        for h in self.inner.members.iter().filter_map(|m| m.handle.as_ref()) {
            h.shutdown();
        }
    }

    /// Sets the pool's gauges (at scrape time; the engines set their own, labelled
    /// `engine="i"`): `higgs_engines{state}`, `higgs_engine_serving{engine}` (1 or 0), and the
    /// totals `higgs_pool_queue_depth`, `higgs_pool_running_sequences`, `higgs_pool_slots` (of the
    /// engines in rotation).
    pub fn record_metrics(&self) {
        let statuses = self.statuses();
        for s in EngineState::ALL {
            let n = statuses.iter().filter(|e| e.state == s).count();
            metrics::gauge!("higgs_engines", "state" => s.as_str()).set(n as f64);
        }
        let (mut queued, mut running, mut slots) = (0, 0, 0);
        for e in &statuses {
            let serving = e.state == EngineState::Serving;
            metrics::gauge!("higgs_engine_serving", "engine" => e.index.to_string())
                .set(if serving { 1.0 } else { 0.0 });
            queued += e.stats.queued;
            running += e.stats.running;
            if e.state.in_rotation() {
                slots += e.stats.slots;
            }
        }
        metrics::gauge!("higgs_pool_queue_depth").set(queued as f64);
        metrics::gauge!("higgs_pool_running_sequences").set(running as f64);
        metrics::gauge!("higgs_pool_slots").set(slots as f64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should panic with its location
mod tests {
    use super::{EngineState as E, PoolPolicy, PoolState as P};

    #[test]
    fn an_engine_leaves_the_rotation_when_stopped_or_failing_step_after_step() {
        let p = PoolPolicy {
            max_step_failures_in_a_row: 3,
        };
        assert_eq!(p.failure(false, 0), None);
        assert_eq!(p.failure(false, 2), None);
        assert!(p
            .failure(false, 3)
            .unwrap()
            .contains("3 engine steps failed"));
        assert!(p.failure(true, 0).unwrap().contains("stopped"));
        // 0 would take every engine out at once: at least one failure is needed.
        let zero = PoolPolicy {
            max_step_failures_in_a_row: 0,
        };
        assert_eq!(zero.failure(false, 0), None);
        assert!(zero.failure(false, 1).is_some());
    }

    #[test]
    fn pool_state_follows_its_engines() {
        assert_eq!(P::of(&[E::Loading, E::Loading], false), P::Loading);
        assert_eq!(P::of(&[E::Serving, E::Loading], false), P::Ready);
        assert_eq!(P::of(&[E::Serving, E::Serving], false), P::Ready);
        assert_eq!(P::of(&[E::Serving, E::Failed], false), P::Degraded);
        assert_eq!(P::of(&[E::Failed, E::Loading], false), P::Loading);
        assert_eq!(P::of(&[E::Failed, E::Failed], false), P::Failed);
        assert_eq!(P::of(&[E::Serving, E::Serving], true), P::Stopping);
    }
}
