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
use higgs_codec::{Codec, DecoderState, Step, StepAudio, StepSpan};
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
    pub chunk: Chunk,
    /// The request's tracing span (codec logs of this request are inside it).
    pub span: tracing::Span,
}

impl WindowJob {
    fn window(&self) -> Option<&Window> {
        match &self.chunk {
            Chunk::Window(w) => Some(w),
            Chunk::Step(_) => None,
        }
    }
}

/// What one job decodes: a window with context frames, or a layer-wise streaming step of the
/// request's decoder state (`EngineConfig::layer_streaming`).
pub enum Chunk {
    Window(Window),
    Step(Step),
}

/// Audio a step lets out: its first frame and the samples of its whole frames.
type FramesOut = (usize, Vec<f32>);

/// The decoder states of the requests decoded by layer-wise steps: one pool row per request.
struct StepStreams {
    /// `[capacity, C, history]` per decoder layer.
    pool: DecoderState,
    free: Vec<usize>,
    /// Request id → its pool row and the audio its steps let out.
    rows: HashMap<u64, (usize, StepAudio)>,
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
    /// Pool rows for layer-wise steps (`with_step_capacity`), allocated at the first step.
    step_capacity: usize,
    steps: Option<StepStreams>,
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
            step_capacity: 0,
            steps: None,
        }
    }

    /// Room for `n` requests decoded by layer-wise steps at once (the engine's running slots).
    pub fn with_step_capacity(mut self, n: usize) -> Self {
        self.step_capacity = n;
        self
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
                self.release_row(id);
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
        let (steps, jobs): (Vec<WindowJob>, Vec<WindowJob>) = jobs
            .into_iter()
            .partition(|j| matches!(j.chunk, Chunk::Step(_)));
        if !steps.is_empty() {
            self.decode_steps(steps);
        }
        if jobs.is_empty() {
            return;
        }
        let window = WindowJob::window;
        let mut by_shape: HashMap<(usize, usize, usize), Vec<usize>> = HashMap::new();
        let mut queues: HashMap<u64, VecDeque<usize>> = HashMap::new();
        for (k, j) in jobs.iter().enumerate() {
            let Some(w) = window(j) else { continue };
            by_shape
                .entry((w.codes.frames(), w.left, w.n_new))
                .or_default()
                .push(k);
            queues.entry(j.id).or_default().push_back(k);
        }
        // First chunks first (they set the time to first audio), then the oldest windows.
        let mut groups: Vec<((usize, usize, usize), Vec<usize>)> = by_shape.into_iter().collect();
        groups.sort_by_key(|(_, g)| {
            let first = g
                .iter()
                .any(|&k| window(&jobs[k]).is_some_and(|w| w.start_frame == 0));
            (!first, g[0])
        });
        let mut audio: Vec<Option<Vec<f32>>> = vec![None; jobs.len()];
        let t0 = Instant::now();
        for ((len, left, n_new), group) in groups {
            let n = window(&jobs[group[0]]).map_or(0, |w| w.codes.num_codebooks);
            let mut flat = Vec::with_capacity(group.len() * n * len);
            for &k in &group {
                if let Some(w) = window(&jobs[k]) {
                    flat.extend_from_slice(&w.codes.data);
                }
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
                    if let Some(w) = window(&jobs[front]) {
                        let (start, n) = (w.start_frame, w.n_new);
                        self.send_audio(&jobs[front], start, n, samples);
                    }
                }
            }
        }
        self.codec_nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Decodes layer-wise steps: a request's steps in order (round `k` takes every request's
    /// `k`-th step), the steps of one round batched by length across requests, each row's
    /// decoder state gathered from and written back to the pool; whole frames go out as soon
    /// as they are complete.
    fn decode_steps(&mut self, jobs: Vec<WindowJob>) {
        let t0 = Instant::now();
        let mut order: Vec<u64> = Vec::new();
        let mut queues: HashMap<u64, VecDeque<WindowJob>> = HashMap::new();
        for j in jobs {
            if !queues.contains_key(&j.id) {
                order.push(j.id);
            }
            queues.entry(j.id).or_default().push_back(j);
        }
        loop {
            let round: Vec<WindowJob> = order
                .iter()
                .filter_map(|id| queues.get_mut(id).and_then(VecDeque::pop_front))
                .filter(|j| !self.dead.contains(&j.id))
                .collect();
            if round.is_empty() {
                break;
            }
            let mut by_len: HashMap<usize, Vec<WindowJob>> = HashMap::new();
            for j in round {
                let len = match &j.chunk {
                    Chunk::Step(s) => s.codes.frames(),
                    Chunk::Window(_) => continue,
                };
                by_len.entry(len).or_default().push(j);
            }
            let mut groups: Vec<(usize, Vec<WindowJob>)> = by_len.into_iter().collect();
            groups.sort_by_key(|(len, _)| *len);
            for (_, group) in groups {
                let t_group = Instant::now();
                let res = self.decode_step_group(&group);
                metrics::histogram!("higgs_codec_decode_seconds", "engine" => self.label.clone())
                    .record(t_group.elapsed().as_secs_f64());
                match res {
                    Ok(out) => {
                        for (j, audio) in group.iter().zip(out) {
                            if let Some((start, samples)) = audio {
                                let hop = self.codec.codec.hop_length();
                                let n = samples.len() / hop;
                                self.send_audio(j, start, n, samples);
                            }
                        }
                    }
                    Err(e) => {
                        let err = GenerationError::Internal(format!("codec decode failed: {e}"));
                        for j in &group {
                            self.release_row(j.id);
                            if self.dead.insert(j.id) {
                                j.span.in_scope(|| tracing::error!("{err}"));
                                let _ = j.to.send(Event::Failed(err.clone()));
                                let _ = self.failed_tx.send(j.id);
                            }
                        }
                    }
                }
            }
        }
        self.codec_nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// One batched step of `group` (steps of equal length of different requests): the audio
    /// each lets out, `(first frame, samples)`.
    fn decode_step_group(&mut self, group: &[WindowJob]) -> Result<Vec<Option<FramesOut>>, String> {
        let codec = self.codec.codec;
        let err = |e: &dyn std::fmt::Display| e.to_string();
        if self.steps.is_none() {
            let cap = self.step_capacity.max(group.len());
            let pool = self
                .codec
                .with(|c| c.initial_step_state(cap))
                .map_err(|e| err(&e))?;
            self.steps = Some(StepStreams {
                pool,
                free: (0..cap).rev().collect(),
                rows: HashMap::new(),
            });
        }
        let Some(st) = self.steps.as_mut() else {
            return Err("no step pool".into());
        };
        let mut rows = Vec::with_capacity(group.len());
        let mut spans = Vec::with_capacity(group.len());
        let mut flat = Vec::new();
        let mut shape = (0, 0, 0);
        for j in group {
            let Chunk::Step(s) = &j.chunk else {
                return Err("a window in a step group".into());
            };
            let row = match st.rows.get(&j.id) {
                Some((row, _)) => *row,
                None if s.first_frame == 0 => {
                    let row = st
                        .free
                        .pop()
                        .ok_or("more streams than decoder-state rows")?;
                    // A fresh stream: its row starts from zeros (the decoder's left padding).
                    let zeros = codec.initial_step_state(1).map_err(|e| err(&e))?;
                    st.pool.set_rows(&[row], &zeros).map_err(|e| err(&e))?;
                    st.rows.insert(j.id, (row, StepAudio::default()));
                    row
                }
                None => return Err(format!("step at frame {} without its state", s.first_frame)),
            };
            rows.push(row);
            spans.push(StepSpan {
                first_frame: s.first_frame,
                total_frames: s.total_frames,
            });
            flat.extend_from_slice(&s.codes.data);
            shape = (group.len(), s.codes.num_codebooks, s.codes.frames());
        }
        let wav = self
            .codec
            .with(|c| -> Result<Tensor, String> {
                let mut state = st.pool.rows(&rows).map_err(|e| err(&e))?;
                let codes = Tensor::from_vec(flat, shape, c.device()).map_err(|e| err(&e))?;
                let wav = c
                    .decode_step(&codes, &mut state, &spans)
                    .map_err(|e| err(&e))?;
                st.pool.set_rows(&rows, &state).map_err(|e| err(&e))?;
                Ok(wav)
            })?
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| err(&e))?;
        let (hop, delay) = (codec.hop_length(), codec.step_delay_samples());
        let mut out = Vec::with_capacity(group.len());
        for (j, samples) in group.iter().zip(wav) {
            let Chunk::Step(s) = &j.chunk else {
                continue;
            };
            let audio = st
                .rows
                .get_mut(&j.id)
                .and_then(|(_, a)| a.push(s, &samples, hop, delay));
            out.push(audio);
            if s.total_frames.is_some() {
                if let Some((row, _)) = st.rows.remove(&j.id) {
                    st.free.push(row);
                }
            }
        }
        Ok(out)
    }

    /// Gives a request's decoder-state row back (its stream ended or was dropped).
    fn release_row(&mut self, id: u64) {
        if let Some(st) = self.steps.as_mut() {
            if let Some((row, _)) = st.rows.remove(&id) {
                st.free.push(row);
            }
        }
    }

    fn send_audio(&mut self, j: &WindowJob, start_frame: usize, frames: usize, samples: Vec<f32>) {
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
            start_frame,
            frames,
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
