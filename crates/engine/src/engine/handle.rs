//! The engine's public handle: submission with admission (the queue limit), cancellation,
//! readiness and stats; and the commands it sends the engine thread.

use super::*;

pub(super) enum Cmd {
    Submit(Box<Pending>),
    /// A preparation worker finished request `id`'s voices, clips and text plan.
    Prepared {
        id: u64,
        result: Result<Box<Prepared>, GenerationError>,
    },
    Cancel(u64),
    Shutdown,
}

/// A submitted request that has no slot yet (being prepared, or waiting).
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) req: GenerateRequest,
    pub(super) events: UnboundedSender<Event>,
    pub(super) submitted: Instant,
    /// `engine_request{seq, request_id}`, a child of the caller's span at submission.
    pub(super) span: tracing::Span,
}

/// Cloneable handle to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) tx: Sender<Cmd>,
    pub(super) shared: Arc<Shared>,
    /// Alive while any handle (or stream) exists; the engine stops when the last one goes
    /// (the preparation pool's own senders keep the command channel open).
    pub(super) _alive: Arc<()>,
}

pub(super) struct Shared {
    pub(super) next_id: AtomicUsize,
    /// Requests submitted and not ended yet (preparing, waiting or running). Admission lets
    /// `max_running + max_queue` of them in, so a burst first fills the free slots and only the
    /// rest counts against the queue limit.
    pub(super) outstanding: AtomicUsize,
    pub(super) max_queue: usize,
    pub(super) max_running: usize,
    pub(super) stats: Mutex<EngineStats>,
    pub(super) stopped: AtomicBool,
    /// The engine loop runs (its warm-up, if any, is done).
    pub(super) ready: AtomicBool,
    pub(super) sample_rate: usize,
    pub(super) model_info: String,
    /// Codec decode time (ns), written by the audio worker.
    pub(super) codec_nanos: Arc<AtomicU64>,
    /// [`EngineConfig::label`], the `engine` label of its metrics.
    pub(super) label: Arc<str>,
}

/// How busy an engine is at this instant, from its admission counter (so a burst of submissions
/// sees each one before the engine thread does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// KV slots not claimed by a submitted request.
    pub free_slots: usize,
    /// Submitted requests beyond the slots (waiting for one).
    pub queued: usize,
    pub slots: usize,
    pub max_queue: usize,
}

/// The receiving side of one request. Dropping it cancels the request.
pub struct RequestStream {
    pub id: u64,
    pub events: UnboundedReceiver<Event>,
    handle: EngineHandle,
}

impl RequestStream {
    /// Blocking receive for synchronous callers (CLI, benchmarks, tests).
    pub fn next_blocking(&mut self) -> Option<Event> {
        self.events.blocking_recv()
    }

    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    pub fn cancel(&self) {
        let _ = self.handle.tx.send(Cmd::Cancel(self.id));
    }

    /// The `engine` label of the engine running it (its index in a pool).
    pub fn engine(&self) -> &str {
        self.handle.label()
    }
}

impl EngineHandle {
    pub fn submit(&self, req: GenerateRequest) -> Result<RequestStream, SubmitError> {
        self.try_submit_returning(req).map_err(|(e, _)| {
            if matches!(e, SubmitError::Overloaded { .. }) {
                metrics::counter!("higgs_requests_rejected_total", "reason" => "overloaded")
                    .increment(1);
            }
            e
        })
    }

    /// [`Self::submit`] that hands a refused request back (a pool tries the next engine with it)
    /// and counts no refusal (the pool counts one per request, not one per engine it tried).
    pub(crate) fn try_submit_returning(
        &self,
        req: GenerateRequest,
    ) -> Result<RequestStream, (SubmitError, Box<GenerateRequest>)> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err((SubmitError::Stopped, Box::new(req)));
        }
        // Admission: refuse at once when every slot is taken and the waiting queue is full.
        let n = self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
        if n >= self.shared.max_running + self.shared.max_queue {
            self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
            let e = SubmitError::Overloaded {
                queued: n.saturating_sub(self.shared.max_running),
                limit: self.shared.max_queue,
            };
            return Err((e, Box::new(req)));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst) as u64;
        let (events, rx) = unbounded_channel();
        let span = tracing::info_span!(
            "engine_request",
            seq = id,
            request_id = req.request_id.as_deref().unwrap_or_default()
        );
        let p = Pending {
            id,
            req,
            events,
            submitted: Instant::now(),
            span,
        };
        if let Err(std::sync::mpsc::SendError(cmd)) = self.tx.send(Cmd::Submit(Box::new(p))) {
            self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
            return match cmd {
                Cmd::Submit(p) => Err((SubmitError::Stopped, Box::new(p.req))),
                // Only a `Submit` was sent.
                _ => unreachable!("a Submit command came back as another"),
            };
        }
        Ok(RequestStream {
            id,
            events: rx,
            handle: self.clone(),
        })
    }

    /// Free slots and waiting requests now (see [`Load`]).
    pub fn load(&self) -> Load {
        let n = self.shared.outstanding.load(Ordering::SeqCst);
        Load {
            free_slots: self.shared.max_running.saturating_sub(n),
            queued: n.saturating_sub(self.shared.max_running),
            slots: self.shared.max_running,
            max_queue: self.shared.max_queue,
        }
    }

    /// The `engine` label of its metrics ([`EngineConfig::label`]).
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    pub fn stats(&self) -> EngineStats {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn sample_rate(&self) -> usize {
        self.shared.sample_rate
    }

    pub fn model_info(&self) -> &str {
        &self.shared.model_info
    }

    /// Stops accepting requests; running ones finish, then the thread exits.
    pub fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Cmd::Shutdown);
    }

    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Whether the engine finished its start-up warm-up and runs requests (requests submitted
    /// earlier wait in the queue).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    /// Blocks until [`Self::is_ready`] (true) or the engine stopped / `timeout` passed (false).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if self.is_stopped() || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}
