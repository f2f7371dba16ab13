//! The audio side of the engine: codec decodes of streamed windows and the delivery of every
//! event of a running request, in order.
//!
//! With the codec on a GPU device of its own (own CUDA stream), this runs on its own thread, so
//! the codec's work overlaps the next model steps instead of stalling the step loop. The
//! engine thread only cuts windows and queues messages; one FIFO carries audio windows and
//! every other event of a running request, so a client sees events in the order the engine made
//! them (text, audio, `Finished`/`Failed`) whichever thread sends them. Inline (on the CPU, or
//! `HIGGS_CODEC_THREAD=0`) the engine thread runs the same code between steps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use higgs_codec::Codec;
use tokio::sync::mpsc::UnboundedSender;

use crate::audio_stream::Window;
use crate::request::{Event, GenerationError, StopReason, Timings, Usage};

/// The codec, shared by the engine thread (reference-audio encodes) and the audio worker
/// (decodes). A candle CUDA device has one cuBLAS handle, whose workspace must not be used by
/// two threads at once: the lock serialises the two users (encodes are rare).
pub struct SharedCodec<'c> {
    pub codec: &'c Codec,
    lock: Mutex<()>,
}

impl<'c> SharedCodec<'c> {
    pub fn new(codec: &'c Codec) -> Self {
        Self {
            codec,
            lock: Mutex::new(()),
        }
    }

    /// Runs `f` with exclusive use of the codec.
    pub fn with<T>(&self, f: impl FnOnce(&Codec) -> T) -> T {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        f(self.codec)
    }
}

/// One ready window of one request.
pub struct WindowJob {
    pub id: u64,
    pub to: UnboundedSender<Event>,
    pub submitted: Instant,
    /// Time the request waited for a slot (for the first-audio log).
    pub queued: Duration,
    /// When its first final code frame was ready (for the first-audio log).
    pub first_frame: Option<Duration>,
    /// Frames generated when the window was cut (for the first-audio log).
    pub frames_received: usize,
    pub window: Window,
    /// The request's tracing span (codec logs of this request are inside it).
    pub span: tracing::Span,
}

/// What the engine thread sends the audio worker.
pub enum AudioMsg {
    /// The windows cut in one engine step.
    Decode(Vec<WindowJob>),
    /// Deliver `event` after everything queued before it.
    Event {
        id: u64,
        to: UnboundedSender<Event>,
        event: Event,
    },
    /// All audio of the request is queued: send `Finished` after it.
    Finish {
        id: u64,
        to: UnboundedSender<Event>,
        reason: StopReason,
        usage: Usage,
        queue: Duration,
        submitted: Instant,
    },
    /// The engine released the request: nothing more comes for it.
    Forget(u64),
}

/// The engine's side: where it queues audio messages.
pub enum AudioOut<'c> {
    Thread(Sender<AudioMsg>),
    Inline(Box<AudioWorker<'c>>),
}

impl<'c> AudioOut<'c> {
    pub fn send(&mut self, msg: AudioMsg) {
        match self {
            // A closed channel means the worker is gone (it only exits when the engine drops
            // its sender, or after a panic): nothing can be delivered any more.
            Self::Thread(tx) => {
                let _ = tx.send(msg);
            }
            Self::Inline(w) => w.handle(vec![msg]),
        }
    }

    /// Queues `event` for request `id` behind its audio.
    pub fn event(&mut self, id: u64, to: &UnboundedSender<Event>, event: Event) {
        self.send(AudioMsg::Event {
            id,
            to: to.clone(),
            event,
        });
    }
}

/// Decodes windows and delivers events. Owned by the worker thread (or inline by the engine).
pub struct AudioWorker<'c> {
    codec: &'c SharedCodec<'c>,
    /// Requests whose decode failed: later messages for them are dropped until `Forget`.
    dead: HashSet<u64>,
    /// Time to first audio of each request that has had audio.
    first_audio: HashMap<u64, Duration>,
    /// Ids of requests this worker failed, for the engine to release.
    failed_tx: Sender<u64>,
    /// Seconds spent in codec decodes, in nanoseconds (shared with the engine's stats).
    codec_nanos: Arc<AtomicU64>,
    /// The engine's `engine` metric label.
    label: Arc<str>,
}

impl<'c> AudioWorker<'c> {
    pub fn new(
        codec: &'c SharedCodec<'c>,
        failed_tx: Sender<u64>,
        codec_nanos: Arc<AtomicU64>,
    ) -> Self {
        Self {
            codec,
            dead: HashSet::new(),
            first_audio: HashMap::new(),
            failed_tx,
            codec_nanos,
            label: Arc::from("0"),
        }
    }

    /// Labels this worker's metrics `engine="label"` (default `0`).
    pub fn with_label(mut self, label: Arc<str>) -> Self {
        self.label = label;
        self
    }

    /// GPU warm-up of the codec: one decode of each `(frames, left, n_new)` window shape, so that
    /// kernel loading happens before the first request.
    pub fn warm_up(&self, num_codebooks: usize, shapes: &[(usize, usize, usize)]) {
        for &(len, left, n_new) in shapes {
            let codes = vec![0u32; num_codebooks * len];
            let res = self
                .codec
                .with(|c| decode_windows(c, codes, (1, num_codebooks, len), left, n_new));
            if let Err(e) = res {
                tracing::warn!("warm-up: codec: {e}");
            }
        }
    }

    /// Worker thread body: takes everything queued at once, so a backlog becomes one bigger
    /// batch instead of many small ones; returns when the engine drops its sender.
    pub fn run(mut self, rx: Receiver<AudioMsg>) {
        while let Ok(first) = rx.recv() {
            let mut msgs = vec![first];
            msgs.extend(rx.try_iter());
            self.handle(msgs);
        }
    }

    /// Handles messages in order; consecutive decode messages share one batch.
    pub fn handle(&mut self, msgs: Vec<AudioMsg>) {
        let mut jobs: Vec<WindowJob> = Vec::new();
        for msg in msgs {
            match msg {
                AudioMsg::Decode(js) => jobs.extend(js),
                other => {
                    self.decode_and_send(std::mem::take(&mut jobs));
                    self.deliver(other);
                }
            }
        }
        self.decode_and_send(jobs);
    }

    fn deliver(&mut self, msg: AudioMsg) {
        match msg {
            AudioMsg::Decode(js) => self.decode_and_send(js),
            AudioMsg::Event { id, to, event } => {
                if !self.dead.contains(&id) {
                    let _ = to.send(event);
                }
            }
            AudioMsg::Finish {
                id,
                to,
                reason,
                usage,
                queue,
                submitted,
            } => {
                if !self.dead.contains(&id) {
                    let _ = to.send(Event::Finished {
                        reason,
                        usage,
                        timings: Timings {
                            queue,
                            time_to_first_audio: self.first_audio.get(&id).copied(),
                            total: submitted.elapsed(),
                        },
                    });
                }
            }
            AudioMsg::Forget(id) => {
                self.dead.remove(&id);
                self.first_audio.remove(&id);
            }
        }
    }

    /// Decodes the windows, batching those of equal shape across requests (and steps), then
    /// sends each request its audio in queue order.
    fn decode_and_send(&mut self, jobs: Vec<WindowJob>) {
        // Nobody listens to a closed stream or a failed request: skip their decodes.
        let jobs: Vec<WindowJob> = jobs
            .into_iter()
            .filter(|j| !j.to.is_closed() && !self.dead.contains(&j.id))
            .collect();
        if jobs.is_empty() {
            return;
        }
        let mut by_shape: HashMap<(usize, usize, usize), Vec<usize>> = HashMap::new();
        let mut queues: HashMap<u64, VecDeque<usize>> = HashMap::new();
        for (k, j) in jobs.iter().enumerate() {
            let w = &j.window;
            by_shape
                .entry((w.codes.frames(), w.left, w.n_new))
                .or_default()
                .push(k);
            queues.entry(j.id).or_default().push_back(k);
        }
        // First chunks first (they set the time to first audio), then the oldest windows.
        let mut groups: Vec<((usize, usize, usize), Vec<usize>)> = by_shape.into_iter().collect();
        groups.sort_by_key(|(_, g)| {
            let first = g.iter().any(|&k| jobs[k].window.start_frame == 0);
            (!first, g[0])
        });
        let mut audio: Vec<Option<Vec<f32>>> = vec![None; jobs.len()];
        let t0 = Instant::now();
        for ((len, left, n_new), group) in groups {
            let n = jobs[group[0]].window.codes.num_codebooks;
            let mut flat = Vec::with_capacity(group.len() * n * len);
            for &k in &group {
                flat.extend_from_slice(&jobs[k].window.codes.data);
            }
            let t_group = Instant::now();
            let shape = (group.len(), n, len);
            let res = self
                .codec
                .with(|c| decode_windows(c, flat, shape, left, n_new));
            metrics::histogram!("higgs_codec_decode_seconds", "engine" => self.label.clone())
                .record(t_group.elapsed().as_secs_f64());
            match res {
                Ok(rows) => {
                    for (&k, samples) in group.iter().zip(rows) {
                        audio[k] = Some(samples);
                    }
                }
                Err(e) => {
                    let err = GenerationError::Internal(format!("codec decode failed: {e}"));
                    for &k in &group {
                        let j = &jobs[k];
                        if self.dead.insert(j.id) {
                            j.span.in_scope(|| tracing::error!("{err}"));
                            let _ = j.to.send(Event::Failed(err.clone()));
                            let _ = self.failed_tx.send(j.id);
                        }
                    }
                }
            }
            // Send what is now in order: a request's window goes once its earlier ones went, so
            // a big round does not hold back audio that is ready.
            for &k in &group {
                let Some(q) = queues.get_mut(&jobs[k].id) else {
                    continue;
                };
                while let Some(&front) = q.front() {
                    if self.dead.contains(&jobs[front].id) {
                        q.clear();
                        break;
                    }
                    let Some(samples) = audio[front].take() else {
                        break;
                    };
                    q.pop_front();
                    self.send_audio(&jobs[front], samples);
                }
            }
        }
        self.codec_nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn send_audio(&mut self, j: &WindowJob, samples: Vec<f32>) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.first_audio.entry(j.id) {
            let ttfa = j.submitted.elapsed();
            e.insert(ttfa);
            // Where the time to first audio went (see docs/BENCHMARKS.md).
            let _span = j.span.enter();
            tracing::debug!(
                ttfa_ms = ttfa.as_secs_f64() * 1e3,
                queued_ms = j.queued.as_secs_f64() * 1e3,
                first_frame_ms = j.first_frame.unwrap_or_default().as_secs_f64() * 1e3,
                frames_at_first_audio = j.frames_received,
                "first audio"
            );
            metrics::histogram!("higgs_time_to_first_audio_seconds", "engine" => self.label.clone())
                .record(ttfa.as_secs_f64());
        }
        let _ = j.to.send(Event::Audio {
            samples,
            start_frame: j.window.start_frame,
            frames: j.window.n_new,
        });
    }
}

/// Decodes `codes` (`[windows, codebooks, frames]`, flat) and returns the `n_new` frames after
/// `left` of each window as f32 samples.
fn decode_windows(
    codec: &Codec,
    codes: Vec<u32>,
    shape: (usize, usize, usize),
    left: usize,
    n_new: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let t = Tensor::from_vec(codes, shape, codec.device()).map_err(|e| e.to_string())?;
    codec
        .decode_window(&t, left, n_new)
        .map_err(|e| e.to_string())?
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.to_vec2::<f32>())
        .map_err(|e| e.to_string())
}
