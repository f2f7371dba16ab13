//! The serving engine: one thread owns the model, codec and KV cache and runs a step loop. Each
//! step packs the decode position of every running sequence plus prefill pieces of new ones
//! (within a token budget) into ONE model forward, samples every sequence with its own RNG,
//! advances each state machine, de-delays and cuts audio windows, which the audio worker
//! ([`crate::audio_out`]; its own thread when the codec has a GPU stream of its own) decodes
//! (windows of several requests in one codec call) and delivers in order with the request's other
//! events. Long-form requests run their
//! chunks in order while other requests interleave. A request whose event receiver is dropped,
//! that is cancelled, or whose deadline passes is removed at the next step and its slot freed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use higgs_model::{
    ForwardOptions, HiggsAudioModel, KvCache, LogitsRequest, PositionKind, SeqInput,
};
use higgs_text::{
    generation_prompt, prepare_generation, AudioRef, GenerationRequest as TextRequest,
    GenerationSuffix, LongFormPlanner, Message, TextTokenizer, VoiceSpec,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::audio_out::{AudioMsg, AudioOut, AudioWorker, SharedCodec, WindowJob};
use crate::audio_stream::{SegmentDedelay, WindowPlanner};
use crate::delay::Codes;
use crate::prompt::check_tokenizer_matches;
use crate::prompt::{expand_prompt, mask_eos, special_ids, PromptSpec};
use crate::request::{
    ClipInput, Event, GenerateRequest, GenerationError, Prompting, StopReason, SubmitError, Usage,
};
use crate::sampling::{sample_rows, SamplingParams, SeqRng};
use crate::state::{GenState, NextInput, StepEvent};
use crate::voices::{ResolvedVoices, VoiceLibrary};

/// Engine limits and streaming policy.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent sequences (KV slots).
    pub max_running: usize,
    /// Positions per KV slot (prompt + generated, per chunk).
    pub max_seq_len: usize,
    /// Requests allowed to wait for a slot; beyond that `submit` answers `Overloaded`.
    pub max_queue: usize,
    /// Prompt positions prefilled per step over all new sequences.
    pub prefill_budget: usize,
    /// Audio frames in the first streamed chunk (lower = earlier first audio).
    pub first_chunk_frames: usize,
    /// Audio frames of the second streamed chunk; each later chunk doubles, up to
    /// `max_chunk_frames`. Growing chunks cut the codec's context overhead (every window re-decodes
    /// the context on both sides) while the listener's buffer grows as fast as the chunks.
    pub chunk_frames: usize,
    /// Cap of the growing chunk size (set it to `chunk_frames` for fixed chunks).
    pub max_chunk_frames: usize,
    /// Codec context frames each side of a decode window (default: the decoder's receptive field).
    pub codec_context: Option<usize>,
    /// On a GPU, load the kernels and capture the decode-step CUDA graphs before serving, so the
    /// first requests do not pay for them.
    pub warmup: bool,
    /// Decode audio on a worker thread that overlaps the model steps (`Some(true)`), or on the
    /// engine thread between steps (`Some(false)`). `None` (default): a thread when the codec is on a GPU device of its own (own stream), inline
    /// otherwise — on CPU cores shared with the model the thread doubled the time to first audio
    /// at 8–32 streams for a few % of throughput (docs/BENCHMARKS.md).
    pub codec_thread: Option<bool>,
    /// Wait for the device after each forward so the phase timers attribute GPU time to the
    /// forward (profiling; costs a little throughput).
    pub profile_sync: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_running: 16,
            max_seq_len: 4096,
            max_queue: 64,
            prefill_budget: 2048,
            first_chunk_frames: 4,
            chunk_frames: 25,
            max_chunk_frames: 100,
            codec_context: None,
            warmup: true,
            codec_thread: None,
            profile_sync: false,
        }
    }
}

impl EngineConfig {
    /// Frames of the streamed chunk number `sent` (0 = the first): `first_chunk_frames`, then
    /// `chunk_frames` doubling per chunk up to `max_chunk_frames` (never below `chunk_frames`).
    pub fn chunk_size(&self, sent: usize) -> usize {
        if sent == 0 {
            return self.first_chunk_frames.max(1);
        }
        let grown = self
            .chunk_frames
            .checked_shl((sent - 1).min(16) as u32)
            .unwrap_or(usize::MAX);
        grown
            .min(self.max_chunk_frames)
            .max(self.chunk_frames)
            .max(1)
    }

    /// KV slots that fit `bytes` of cache memory for this model at its dtype.
    pub fn slots_for_memory(model: &HiggsAudioModel, max_seq_len: usize, bytes: usize) -> usize {
        let per = KvCache::bytes_per_position(model.config(), model.dtype()) * max_seq_len;
        (bytes / per.max(1)).max(1)
    }
}

/// Everything the engine thread owns.
pub struct EngineParts {
    pub model: HiggsAudioModel,
    /// On a GPU, best loaded on its own device (stream) so its decodes overlap the model's steps.
    pub codec: higgs_codec::Codec,
    pub tokenizer: TextTokenizer,
    pub voices: Option<VoiceLibrary>,
}

/// Counters for health endpoints, metrics and tests.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    pub queued: usize,
    pub running: usize,
    pub slots: usize,
    pub max_seq_len: usize,
    pub kv_positions_used: usize,
    pub forward_calls: u64,
    /// forward batch size (sequences) -> number of forward calls.
    pub batch_sizes: BTreeMap<usize, u64>,
    pub positions_total: u64,
    pub audio_frames_total: u64,
    pub requests_finished: u64,
    pub requests_failed: u64,
    pub requests_cancelled: u64,
    /// Time per phase of the step loop, summed (seconds): the model forward, sampling (one
    /// batched call for the audio rows of a step, plus RAS re-draws), codec decodes (on the
    /// audio worker's thread when it has one), and whole steps. On a GPU the forward is
    /// asynchronous: unless `HIGGS_PROFILE_SYNC=1` (a device sync after each forward), its kernels
    /// finish inside the sampling phase's host copy.
    pub forward_seconds: f64,
    pub sample_seconds: f64,
    pub codec_seconds: f64,
    pub step_seconds: f64,
}

enum Cmd {
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
struct Pending {
    id: u64,
    req: GenerateRequest,
    events: UnboundedSender<Event>,
    submitted: Instant,
    /// `engine_request{seq, request_id}`, a child of the caller's span at submission.
    span: tracing::Span,
}

/// What preparation made of a request's prompting: the chunk plan and its audio clips as codes.
struct Prepared {
    plan: Plan,
    clips: Vec<Codes>,
}

/// A prepared request waiting for a slot.
struct Queued {
    p: Pending,
    prepared: Prepared,
}

/// Work for the preparation pool (voice lookup, reference encodes, text pipeline), which runs off
/// the engine thread so a cache miss or a long upload never stalls the running streams.
struct PrepJob {
    id: u64,
    prompting: Prompting,
    span: tracing::Span,
}

/// Preparation threads: encodes are seconds on a CPU codec, so two let a cached voice pass a
/// long upload.
const PREP_THREADS: usize = 2;

/// Cloneable handle to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
    /// Alive while any handle (or stream) exists; the engine stops when the last one goes
    /// (the preparation pool's own senders keep the command channel open).
    _alive: Arc<()>,
}

struct Shared {
    next_id: AtomicUsize,
    queued: AtomicUsize,
    max_queue: usize,
    stats: Mutex<EngineStats>,
    stopped: AtomicBool,
    /// The engine loop runs (its warm-up, if any, is done).
    ready: AtomicBool,
    sample_rate: usize,
    model_info: String,
    /// Codec decode time (ns), written by the audio worker.
    codec_nanos: Arc<AtomicU64>,
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
}

impl EngineHandle {
    pub fn submit(&self, req: GenerateRequest) -> Result<RequestStream, SubmitError> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(SubmitError::Stopped);
        }
        // Admission: refuse at once when the waiting queue is full.
        let q = self.shared.queued.fetch_add(1, Ordering::SeqCst);
        if q >= self.shared.max_queue {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("higgs_requests_rejected_total", "reason" => "overloaded")
                .increment(1);
            return Err(SubmitError::Overloaded {
                queued: q,
                limit: self.shared.max_queue,
            });
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
        if self.tx.send(Cmd::Submit(Box::new(p))).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Stopped);
        }
        Ok(RequestStream {
            id,
            events: rx,
            handle: self.clone(),
        })
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

/// Starts the engine thread.
pub fn start(
    config: EngineConfig,
    parts: EngineParts,
) -> Result<(EngineHandle, std::thread::JoinHandle<()>), GenerationError> {
    check_tokenizer_matches(parts.model.config(), &parts.tokenizer)
        .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?;
    if config.max_running == 0 || config.max_seq_len == 0 {
        return Err(GenerationError::InvalidRequest(
            "max_running and max_seq_len must be > 0".into(),
        ));
    }
    // Weights were uploaded on this thread's stream; the engine and audio threads use their own.
    for d in [parts.model.device(), parts.codec.device()] {
        d.synchronize()
            .map_err(|e| GenerationError::Internal(format!("device synchronize: {e}")))?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg = parts.model.config();
    let shared = Arc::new(Shared {
        next_id: AtomicUsize::new(1),
        queued: AtomicUsize::new(0),
        max_queue: config.max_queue,
        stats: Mutex::new(EngineStats {
            slots: config.max_running,
            max_seq_len: config.max_seq_len,
            ..Default::default()
        }),
        stopped: AtomicBool::new(false),
        ready: AtomicBool::new(false),
        sample_rate: parts.codec.sample_rate(),
        model_info: format!(
            "higgs-audio-v2 ({} layers, hidden {}, {:?}, {:?})",
            cfg.num_hidden_layers,
            cfg.hidden_size,
            parts.model.dtype(),
            parts.model.device()
        ),
        codec_nanos: Arc::new(AtomicU64::new(0)),
    });
    let alive = Arc::new(());
    let handles = Arc::downgrade(&alive);
    let prep_results = tx.clone();
    let handle = EngineHandle {
        tx,
        shared: shared.clone(),
        _alive: alive,
    };
    let join = std::thread::Builder::new()
        .name("higgs-engine".into())
        .spawn(move || {
            let codec = SharedCodec::new(&parts.codec);
            let (prep_tx, prep_rx) = std::sync::mpsc::channel::<PrepJob>();
            let prep_rx = Mutex::new(prep_rx);
            std::thread::scope(|scope| {
                let (failed_tx, failed_rx) = std::sync::mpsc::channel();
                let worker = AudioWorker::new(&codec, failed_tx, shared.codec_nanos.clone());
                let warm = config.warmup && parts.model.device().is_cuda();
                let shapes = codec_warmup_shapes(&config, &parts);
                let nc = parts.model.config().num_codebooks;
                // One candle CUDA device has one cuBLAS handle: the codec may only get its own
                // thread when it has its own device (see `EngineParts::codec`).
                let (mdev, cdev) = (parts.model.device(), parts.codec.device());
                let shares_gpu = mdev.is_cuda() && mdev.same_device(cdev);
                let own_gpu = cdev.is_cuda() && !mdev.same_device(cdev);
                let threaded = config.codec_thread.unwrap_or(own_gpu) && !shares_gpu;
                if config.codec_thread == Some(true) && shares_gpu {
                    tracing::info!(
                        "the codec shares the model's CUDA device: decoding audio on the engine thread"
                    );
                }
                tracing::debug!(threaded, "audio worker");
                let (audio, audio_ready) = if threaded {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
                    let spawned = std::thread::Builder::new()
                        .name("higgs-audio".into())
                        .spawn_scoped(scope, move || {
                            if warm {
                                worker.warm_up(nc, &shapes);
                            }
                            let _ = ready_tx.send(());
                            worker.run(rx);
                        });
                    if let Err(e) = spawned {
                        tracing::error!("cannot spawn the audio thread: {e}");
                        shared.stopped.store(true, Ordering::SeqCst);
                        return;
                    }
                    (AudioOut::Thread(tx), Some(ready_rx))
                } else {
                    if warm {
                        worker.warm_up(nc, &shapes);
                    }
                    (AudioOut::Inline(Box::new(worker)), None)
                };
                for k in 0..PREP_THREADS {
                    let (parts, codec, rx, results) = (&parts, &codec, &prep_rx, prep_results.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("higgs-prep-{k}"))
                        .spawn_scoped(scope, move || prep_worker(parts, codec, rx, results));
                    if let Err(e) = spawned {
                        tracing::error!("cannot spawn a preparation thread: {e}");
                        shared.stopped.store(true, Ordering::SeqCst);
                        return;
                    }
                }
                drop(prep_results);
                let links = EngineLinks { audio, audio_failed: failed_rx, prep: prep_tx, handles };
                let mut e = match Engine::new(config, &parts, links, shared.clone()) {
                    Ok(e) => e,
                    Err(err) => {
                        tracing::error!("engine failed to start: {err}");
                        shared.stopped.store(true, Ordering::SeqCst);
                        return;
                    }
                };
                e.warm_up();
                if let Some(r) = audio_ready {
                    // Err: the audio thread is gone; the engine notices at its first window.
                    let _ = r.recv();
                }
                shared.ready.store(true, Ordering::SeqCst);
                e.run(rx);
                // Dropping the engine closes the audio queue: the worker delivers what is left,
                // then the scope joins it.
                drop(e);
            });
            shared.stopped.store(true, Ordering::SeqCst);
        })
        .map_err(|e| GenerationError::Internal(format!("cannot spawn the engine thread: {e}")))?;
    Ok((handle, join))
}

/// `(frames, left, n_new)` of the first two streamed window shapes, decoded once at warm-up.
fn codec_warmup_shapes(cfg: &EngineConfig, parts: &EngineParts) -> Vec<(usize, usize, usize)> {
    let ctx = cfg
        .codec_context
        .unwrap_or_else(|| parts.codec.decoder_receptive_field_frames());
    [
        (0, cfg.first_chunk_frames.max(1)),
        (ctx, cfg.chunk_frames.max(1)),
    ]
    .into_iter()
    .map(|(left, n_new)| (left + n_new + ctx, left, n_new))
    .collect()
}

/// The current chunk of a request.
struct ChunkRun {
    /// Prompt positions not yet prefilled.
    prefill: SeqInput,
    state: GenState,
    next: Option<SeqInput>,
    dedelay: Option<SegmentDedelay>,
    /// Final frames of this chunk (context for the next chunk).
    frames: Vec<Vec<u32>>,
}

enum Plan {
    Script { planner: LongFormPlanner },
    Once { messages: Vec<Message>, done: bool },
}

struct Active {
    id: u64,
    /// See [`Pending::span`].
    span: tracing::Span,
    slot: usize,
    events: UnboundedSender<Event>,
    submitted: Instant,
    started: Instant,
    deadline: Option<Instant>,
    req: GenerateRequest,
    rng: SeqRng,
    plan: Plan,
    clips: Vec<Codes>,
    chunk: ChunkRun,
    audio: WindowPlanner,
    usage: Usage,
    reasons: Vec<StopReason>,
    /// When the first final code frame (all codebooks, after the delay pattern) was ready.
    first_frame: Option<Duration>,
    /// Audio chunks streamed so far (sets the next chunk's size).
    chunks_sent: usize,
    /// All chunks generated; waiting for the audio tail to be decoded.
    draining: bool,
}

/// The engine thread's connections to its helpers.
struct EngineLinks<'p> {
    audio: AudioOut<'p>,
    audio_failed: Receiver<u64>,
    prep: Sender<PrepJob>,
    handles: Weak<()>,
}

struct Engine<'p> {
    cfg: EngineConfig,
    parts: &'p EngineParts,
    /// Decodes and delivers audio and every other event of running requests, in order.
    audio: AudioOut<'p>,
    /// Requests the audio worker failed (codec errors), to release.
    audio_failed: Receiver<u64>,
    /// The preparation pool's queue.
    prep: Sender<PrepJob>,
    /// Dead once every handle is dropped.
    handles: Weak<()>,
    cache: KvCache,
    free_slots: Vec<usize>,
    /// Submitted, with the preparation pool.
    preparing: HashMap<u64, Pending>,
    waiting: VecDeque<Queued>,
    active: Vec<Active>,
    shared: Arc<Shared>,
    stop_ids: Vec<u32>,
    context: usize,
    stats: EngineStats,
}

impl<'p> Engine<'p> {
    fn new(
        cfg: EngineConfig,
        parts: &'p EngineParts,
        links: EngineLinks<'p>,
        shared: Arc<Shared>,
    ) -> Result<Self, GenerationError> {
        let cache = parts
            .model
            .new_cache(cfg.max_running, cfg.max_seq_len)
            .map_err(|e| GenerationError::Internal(format!("cannot allocate the KV cache: {e}")))?;
        let s = parts.tokenizer.special();
        let mut stop_ids = s.stop_tokens().to_vec();
        stop_ids.push(parts.model.config().pad_token_id);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let context = cfg
            .codec_context
            .unwrap_or_else(|| parts.codec.decoder_receptive_field_frames());
        let stats = EngineStats {
            slots: cfg.max_running,
            max_seq_len: cfg.max_seq_len,
            ..Default::default()
        };
        Ok(Self {
            free_slots: (0..cfg.max_running).rev().collect(),
            cfg,
            parts,
            audio: links.audio,
            audio_failed: links.audio_failed,
            prep: links.prep,
            handles: links.handles,
            cache,
            preparing: HashMap::new(),
            waiting: VecDeque::new(),
            active: Vec::new(),
            shared,
            stop_ids,
            context,
            stats,
        })
    }

    /// GPU only: captures the decode-step graphs of every power-of-two batch span (shortest key
    /// bucket), runs one prefill and one sampler call (the audio worker warms the codec),
    /// so that kernel loading (PTX JIT) and graph capture happen before the first request.
    /// Failures only cost the warm-up: requests then pay as before.
    fn warm_up(&mut self) {
        let parts = self.parts;
        if !self.cfg.warmup || !parts.model.device().is_cuda() {
            return;
        }
        let t0 = Instant::now();
        let slots = self.cache.num_slots();
        let rows: Vec<usize> = std::iter::successors(Some(1usize), |r| r.checked_mul(2))
            .take_while(|&r| r < slots)
            .chain([slots])
            .collect();
        let graphs = match parts.model.prepare_decode_graphs(&mut self.cache, &rows) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("warm-up: decode graphs not prepared: {e}");
                0
            }
        };
        if let Err(e) = self.warm_up_kernels() {
            tracing::warn!("warm-up: {e}");
        }
        tracing::info!(
            graphs,
            "engine warm-up done in {:.2}s",
            t0.elapsed().as_secs_f64()
        );
    }

    fn warm_up_kernels(&mut self) -> Result<(), String> {
        let parts = self.parts;
        let model = &parts.model;
        let cfg = model.config();
        let slot = 0;
        let mut s = SeqInput::new(slot).with_logits(LogitsRequest::TEXT);
        for _ in 0..8 {
            s.push_text(cfg.audio_out_bos_token_id);
        }
        let out = model
            .forward(&[s], &mut self.cache, ForwardOptions::default())
            .map_err(|e| format!("prefill: {e}"))?;
        self.cache.reset(slot);
        let nc = cfg.num_codebooks;
        let rows = cfg.codebook_rows();
        let logits = Tensor::zeros((nc, rows), candle_core::DType::F32, model.device())
            .map_err(|e| e.to_string())?;
        let params = vec![
            SamplingParams {
                temperature: 1.0,
                top_k: Some(50),
                top_p: 0.95,
            };
            nc
        ];
        sample_rows(&logits, &params, &vec![0.5; nc]).map_err(|e| format!("sampler: {e}"))?;
        if let Some(t) = out.text_logits {
            t.argmax(candle_core::D::Minus1)
                .and_then(|a| a.to_vec1::<u32>())
                .map_err(|e| format!("text head: {e}"))?;
        }
        Ok(())
    }

    fn run(&mut self, rx: Receiver<Cmd>) {
        let mut shutting_down = false;
        loop {
            // Commands: block only when there is nothing to do.
            // Requests being prepared come back as commands: waiting for commands covers them.
            let idle = self.active.is_empty() && self.waiting.is_empty();
            if idle && shutting_down && self.preparing.is_empty() {
                break;
            }
            let first = if idle {
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => {
                        if self.handles.strong_count() == 0 {
                            shutting_down = true;
                        }
                        None
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                None
            };
            for cmd in first.into_iter().chain(rx.try_iter()) {
                match cmd {
                    Cmd::Submit(p) => self.prepare(*p),
                    Cmd::Prepared { id, result } => self.prepared(id, result),
                    Cmd::Cancel(id) => self.cancel(id),
                    Cmd::Shutdown => shutting_down = true,
                }
            }
            while let Ok(id) = self.audio_failed.try_recv() {
                self.drop_failed_by_audio(id);
            }
            self.reap();
            self.admit();
            if !self.active.is_empty() {
                self.step();
            }
            self.publish_stats();
        }
    }

    /// The audio worker failed request `id` (and told its client): release it.
    fn drop_failed_by_audio(&mut self, id: u64) {
        // A request that already finished here was counted as finished; the client got the error.
        if let Some(i) = self.active.iter().position(|a| a.id == id) {
            let a = self.active.swap_remove(i);
            self.end(Ending::Running(Box::new(a)), Outcome::FailedByAudio);
        }
    }

    fn publish_stats(&mut self) {
        self.stats.codec_seconds = self.shared.codec_nanos.load(Ordering::Relaxed) as f64 * 1e-9;
        self.stats.queued = self.waiting.len();
        self.stats.running = self.active.len();
        self.stats.kv_positions_used = self.active.iter().map(|a| self.cache.len(a.slot)).sum();
        metrics::gauge!("higgs_queue_depth").set(self.stats.queued as f64);
        metrics::gauge!("higgs_running_sequences").set(self.stats.running as f64);
        metrics::gauge!("higgs_kv_usage_ratio").set(
            self.stats.kv_positions_used as f64
                / (self.cfg.max_running * self.cfg.max_seq_len) as f64,
        );
        if let Ok(mut s) = self.shared.stats.lock() {
            *s = self.stats.clone();
        }
    }

    fn cancel(&mut self, id: u64) {
        if let Some(p) = self.preparing.remove(&id) {
            self.end(Ending::Queued(p), Outcome::Cancelled);
        }
        if let Some(i) = self.waiting.iter().position(|q| q.p.id == id) {
            if let Some(q) = self.waiting.remove(i) {
                self.end(Ending::Queued(q.p), Outcome::Cancelled);
            }
        }
        if let Some(i) = self.active.iter().position(|a| a.id == id) {
            let a = self.active.swap_remove(i);
            self.end(Ending::Running(Box::new(a)), Outcome::Cancelled);
        }
    }

    /// Hands a submitted request to the preparation pool.
    fn prepare(&mut self, mut p: Pending) {
        let prompting = std::mem::replace(
            &mut p.req.prompting,
            Prompting::Messages {
                messages: Vec::new(),
                clips: Vec::new(),
            },
        );
        let job = PrepJob {
            id: p.id,
            prompting,
            span: p.span.clone(),
        };
        if self.prep.send(job).is_err() {
            let e = GenerationError::Internal("the preparation pool is gone".into());
            self.end(Ending::Queued(p), Outcome::Failed(e));
            return;
        }
        self.preparing.insert(p.id, p);
    }

    /// A request came back from preparation: it waits for a slot, or fails.
    fn prepared(&mut self, id: u64, result: Result<Box<Prepared>, GenerationError>) {
        // Absent: it was cancelled or timed out meanwhile (already counted).
        let Some(p) = self.preparing.remove(&id) else {
            return;
        };
        match result {
            Ok(prepared) => self.waiting.push_back(Queued {
                p,
                prepared: *prepared,
            }),
            Err(e) => self.end(Ending::Queued(p), Outcome::Failed(e)),
        }
    }

    /// Drops requests whose client went away or whose deadline passed.
    fn reap(&mut self) {
        let now = Instant::now();
        let gone = |p: &Pending| {
            if let Some(t) = p.req.timeout.filter(|&t| now >= p.submitted + t) {
                Some(Outcome::TimedOut(t))
            } else {
                p.events.is_closed().then_some(Outcome::Cancelled)
            }
        };
        let ids: Vec<(u64, Outcome)> = self
            .preparing
            .values()
            .filter_map(|p| gone(p).map(|o| (p.id, o)))
            .collect();
        for (id, o) in ids {
            if let Some(p) = self.preparing.remove(&id) {
                self.end(Ending::Queued(p), o);
            }
        }
        let mut i = 0;
        while i < self.waiting.len() {
            match gone(&self.waiting[i].p) {
                Some(o) => {
                    if let Some(q) = self.waiting.remove(i) {
                        self.end(Ending::Queued(q.p), o);
                    }
                }
                None => i += 1,
            }
        }
        let mut i = 0;
        while i < self.active.len() {
            let a = &self.active[i];
            let outcome = match (a.deadline, a.req.timeout) {
                (Some(d), Some(t)) if now >= d => Some(Outcome::TimedOut(t)),
                _ => a.events.is_closed().then_some(Outcome::Cancelled),
            };
            match outcome {
                Some(o) => {
                    let a = self.active.swap_remove(i);
                    self.end(Ending::Running(Box::new(a)), o);
                }
                None => i += 1,
            }
        }
    }

    fn admit(&mut self) {
        while !self.free_slots.is_empty() {
            let Some(q) = self.waiting.pop_front() else {
                break;
            };
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            let slot = self.free_slots.pop().unwrap_or_default();
            match self.start_request(q, slot) {
                Ok(a) => {
                    let _ = a.events.send(Event::Started {
                        queue: a.started - a.submitted,
                    });
                    metrics::histogram!("higgs_queue_seconds")
                        .record((a.started - a.submitted).as_secs_f64());
                    self.active.push(a);
                }
                Err((a, e)) => self.end(Ending::Running(a), Outcome::Failed(e)),
            }
        }
    }

    fn start_request(
        &mut self,
        q: Queued,
        slot: usize,
    ) -> Result<Active, (Box<Active>, GenerationError)> {
        let Queued { p, prepared } = q;
        let n = self.parts.model.config().num_codebooks;
        let mut a = Active {
            id: p.id,
            slot,
            events: p.events,
            submitted: p.submitted,
            started: Instant::now(),
            deadline: p.req.timeout.map(|t| p.submitted + t),
            rng: SeqRng::new(p.req.params.seed),
            req: p.req,
            span: p.span,
            plan: prepared.plan,
            clips: prepared.clips,
            chunk: ChunkRun {
                prefill: SeqInput::new(slot),
                state: GenState::new(
                    special_ids(self.parts.model.config(), Vec::new()),
                    0,
                    &[],
                    0,
                ),
                next: None,
                dedelay: None,
                frames: Vec::new(),
            },
            audio: WindowPlanner::new(n, self.context, self.context),
            usage: Usage::default(),
            reasons: Vec::new(),
            first_frame: None,
            chunks_sent: 0,
            draining: false,
        };
        match self.next_chunk(&mut a) {
            Ok(true) => Ok(a),
            Ok(false) => Err((
                Box::new(a),
                GenerationError::InvalidRequest(
                    "the transcript produced no chunk to generate".into(),
                ),
            )),
            Err(e) => Err((Box::new(a), e)),
        }
    }

    /// Builds the next chunk's prompt; false when the request has no more chunks.
    fn next_chunk(&self, a: &mut Active) -> Result<bool, GenerationError> {
        let tok = &self.parts.tokenizer;
        let suffix = if a.req.force_audio {
            GenerationSuffix::AssistantAudio
        } else {
            GenerationSuffix::Assistant
        };
        let prompt = match &mut a.plan {
            Plan::Script { planner } => match planner
                .next_step()
                .map_err(|e| GenerationError::Internal(e.to_string()))?
            {
                Some(step) => step.prompt(tok, suffix),
                None => return Ok(false),
            },
            Plan::Once { messages, done } => {
                if *done {
                    return Ok(false);
                }
                *done = true;
                generation_prompt(tok, messages, suffix)
            }
        }
        .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?;
        let cfg = self.parts.model.config();
        let clips = prompt
            .audio_refs()
            .iter()
            .map(|r| {
                a.clips.get(r.0).cloned().ok_or_else(|| {
                    GenerationError::InvalidRequest(format!(
                        "the messages reference audio clip {} which was not supplied",
                        r.0
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let spec = PromptSpec {
            ids: prompt.ids,
            clips,
            audio_in_as_codes: cfg.encode_audio_in_tokens,
        };
        let expanded = expand_prompt(cfg, &spec)
            .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?;
        let need = expanded.seq.len() + a.req.params.max_new_tokens;
        if need > self.cfg.max_seq_len {
            return Err(GenerationError::InvalidRequest(format!(
                "prompt ({} positions) + max_new_tokens ({}) = {need} exceeds the engine's sequence limit ({}); shorten the \
                 text/reference audio, lower max_new_tokens, or use chunking",
                expanded.seq.len(),
                a.req.params.max_new_tokens,
                self.cfg.max_seq_len
            )));
        }
        a.usage.prompt_tokens += expanded.prompt_tokens;
        let mut prefill = expanded.seq.clone();
        prefill.slot = a.slot;
        a.chunk = ChunkRun {
            prefill,
            state: GenState::new(
                special_ids(cfg, self.stop_ids.clone()),
                expanded.last_token,
                &expanded.audio_out_columns,
                a.req.params.max_new_tokens,
            ),
            next: None,
            dedelay: None,
            frames: Vec::new(),
        };
        // Same seed per chunk, as the reference re-seeds every generate call.
        a.rng = SeqRng::new(a.req.params.seed);
        Ok(true)
    }

    /// One engine step: a single batched forward for every running sequence.
    fn step(&mut self) {
        let t0 = Instant::now();
        let mut batch: Vec<SeqInput> = Vec::new();
        let mut owners: Vec<(usize, bool)> = Vec::new(); // (index into active, final piece)
        let mut budget = self.cfg.prefill_budget.max(1);
        for (i, a) in self.active.iter_mut().enumerate() {
            if a.draining {
                continue;
            }
            let c = &mut a.chunk;
            if !c.prefill.is_empty() {
                if budget == 0 {
                    continue;
                }
                let take = c.prefill.len().min(budget);
                budget -= take;
                let piece = split_front(&mut c.prefill, take);
                let last = c.prefill.is_empty();
                let (text, audio) = c.state.needs_logits();
                batch.push(piece.with_logits(if last {
                    LogitsRequest { text, audio }
                } else {
                    LogitsRequest::NONE
                }));
                owners.push((i, last));
            } else if let Some(next) = c.next.take() {
                let (text, audio) = c.state.needs_logits();
                batch.push(next.with_logits(LogitsRequest { text, audio }));
                owners.push((i, true));
            }
        }
        if batch.is_empty() {
            self.flush_audio();
            self.finish_drained();
            return;
        }
        let positions: usize = batch.iter().map(SeqInput::len).sum();
        let t_fwd = Instant::now();
        let out = match self
            .parts
            .model
            .forward(&batch, &mut self.cache, ForwardOptions::default())
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(
                    requests = ?owners.iter().map(|&(i, _)| self.active[i].id).collect::<Vec<_>>(),
                    "model forward failed: {e}"
                );
                let failed: Vec<usize> = owners.iter().map(|(i, _)| *i).collect();
                self.fail_many(
                    &failed,
                    GenerationError::Internal(format!("model forward failed: {e}")),
                );
                return;
            }
        };
        if self.cfg.profile_sync {
            let _ = self.parts.model.device().synchronize();
        }
        self.stats.forward_seconds += t_fwd.elapsed().as_secs_f64();
        self.stats.forward_calls += 1;
        *self.stats.batch_sizes.entry(batch.len()).or_default() += 1;
        self.stats.positions_total += positions as u64;
        metrics::counter!("higgs_forward_calls_total").increment(1);
        metrics::histogram!("higgs_batch_size").record(batch.len() as f64);
        metrics::counter!("higgs_positions_total").increment(positions as u64);

        let (mut ti, mut ai) = (0usize, 0usize);
        // (active index, text row, audio row) of every sequence whose piece ends its prompt.
        let mut jobs: Vec<(usize, Option<usize>, Option<usize>)> = Vec::new();
        for (b, &(i, last)) in owners.iter().enumerate() {
            let req = batch[b].logits;
            let text_row = req.text.then(|| {
                ti += 1;
                ti - 1
            });
            let audio_row = req.audio.then(|| {
                ai += 1;
                ai - 1
            });
            if last {
                jobs.push((i, text_row, audio_row));
            }
        }
        let t_sample = Instant::now();
        let audio_cols = match self.sample_audio(&out.audio_logits, &jobs) {
            Ok(c) => c,
            Err(e) => {
                let failed: Vec<usize> = jobs.iter().map(|j| j.0).collect();
                self.fail_many(&failed, e);
                return;
            }
        };
        let text_ids = match self.sample_text(&out.text_logits, &jobs, &audio_cols) {
            Ok(t) => t,
            Err(e) => {
                let failed: Vec<usize> = jobs.iter().map(|j| j.0).collect();
                self.fail_many(&failed, e);
                return;
            }
        };
        self.stats.sample_seconds += t_sample.elapsed().as_secs_f64();
        let mut failed: Vec<(usize, GenerationError)> = Vec::new();
        for ((&(i, _, _), col), text) in jobs.iter().zip(audio_cols).zip(text_ids) {
            if let Err(e) = self.advance(i, text, col) {
                failed.push((i, e));
            }
        }
        failed.sort_by_key(|f| f.0);
        for (i, e) in failed.into_iter().rev() {
            self.fail_many(&[i], e);
        }
        self.finish_chunks();
        self.flush_audio();
        self.finish_drained();
        let dt = t0.elapsed().as_secs_f64();
        self.stats.step_seconds += dt;
        metrics::histogram!("higgs_step_seconds").record(dt);
    }

    /// Samples the audio column of every job with audio logits in ONE call over all their rows
    /// (`[jobs * num_codebooks, codebook_rows]`), then the RAS re-draws of all of them in one more
    /// call. Uniforms come from each sequence's own RNG in the same order as a lone sequence
    /// draws them (its columns, then its re-draws), so batching never changes a sequence's codes.
    fn sample_audio(
        &mut self,
        logits: &Option<Tensor>,
        jobs: &[(usize, Option<usize>, Option<usize>)],
    ) -> Result<Vec<Option<Vec<u32>>>, GenerationError> {
        let internal = |e: candle_core::Error| GenerationError::Internal(e.to_string());
        let mut res: Vec<Option<Vec<u32>>> = vec![None; jobs.len()];
        let with: Vec<(usize, usize)> = jobs
            .iter()
            .enumerate()
            .filter_map(|(j, &(_, _, a))| a.map(|r| (j, r)))
            .collect();
        let Some(l) = logits else {
            return Ok(res);
        };
        if with.is_empty() {
            return Ok(res);
        }
        let (n_rows, nc, v) = l.dims3().map_err(internal)?;
        let rows: Vec<u32> = with.iter().map(|&(_, r)| r as u32).collect();
        let in_order = rows.len() == n_rows && rows.iter().enumerate().all(|(k, &r)| r == k as u32);
        let sel = if in_order {
            l.clone()
        } else {
            let idx = Tensor::from_vec(rows, with.len(), l.device()).map_err(internal)?;
            l.index_select(&idx, 0).map_err(internal)?
        };
        let flat = sel.reshape((with.len() * nc, v)).map_err(internal)?;
        let mut params = Vec::with_capacity(with.len() * nc);
        let mut us = Vec::with_capacity(with.len() * nc);
        for &(j, _) in &with {
            let a = &mut self.active[jobs[j].0];
            for _ in 0..nc {
                params.push(a.req.params.sampling);
                us.push(a.rng.uniform());
            }
        }
        let ids = sample_rows(&flat, &params, &us).map_err(internal)?;
        let mut cols: Vec<Vec<u32>> = ids.chunks(nc).map(<[u32]>::to_vec).collect();
        let mut ras: Vec<(usize, usize)> = Vec::new();
        let mut ras_us = Vec::new();
        for (w, &(j, _)) in with.iter().enumerate() {
            let a = &mut self.active[jobs[j].0];
            for k in a.chunk.state.ras_rows(&cols[w], &a.req.params.ras) {
                ras.push((w, k));
                ras_us.push(a.rng.uniform());
            }
        }
        if !ras.is_empty() {
            let idx: Vec<u32> = ras.iter().map(|&(w, k)| (w * nc + k) as u32).collect();
            let idx = Tensor::from_vec(idx, ras.len(), flat.device()).map_err(internal)?;
            let sel = flat.index_select(&idx, 0).map_err(internal)?;
            let raw = vec![
                SamplingParams {
                    temperature: 1.0,
                    top_k: None,
                    top_p: 1.0,
                };
                ras.len()
            ];
            let ids = sample_rows(&sel, &raw, &ras_us).map_err(internal)?;
            for (&(w, k), id) in ras.iter().zip(ids) {
                cols[w][k] = id;
            }
        }
        for (w, &(j, _)) in with.iter().enumerate() {
            res[j] = Some(std::mem::take(&mut cols[w]));
        }
        Ok(res)
    }

    /// Samples the text token of every job in text mode (text logits and no audio column) in ONE
    /// call: one gather of their rows and one host copy (text rows are sampled on the host, see
    /// `sampling::DEVICE_SORT_MAX_COLS`), instead of a copy and a device sync per sequence.
    /// Each sequence draws one uniform from its own RNG, as when it runs alone.
    fn sample_text(
        &mut self,
        logits: &Option<Tensor>,
        jobs: &[(usize, Option<usize>, Option<usize>)],
        audio_cols: &[Option<Vec<u32>>],
    ) -> Result<Vec<Option<u32>>, GenerationError> {
        let internal = |e: candle_core::Error| GenerationError::Internal(e.to_string());
        let mut res = vec![None; jobs.len()];
        let Some(l) = logits else {
            return Ok(res);
        };
        let with: Vec<(usize, u32)> = jobs
            .iter()
            .zip(audio_cols)
            .enumerate()
            .filter_map(|(j, (&(_, t, _), col))| match (t, col) {
                (Some(r), None) => Some((j, r as u32)),
                _ => None,
            })
            .collect();
        if with.is_empty() {
            return Ok(res);
        }
        let idx: Vec<u32> = with.iter().map(|&(_, r)| r).collect();
        let idx = Tensor::from_vec(idx, with.len(), l.device()).map_err(internal)?;
        let sel = l.index_select(&idx, 0).map_err(internal)?;
        let mut params = Vec::with_capacity(with.len());
        let mut us = Vec::with_capacity(with.len());
        for &(j, _) in &with {
            let a = &mut self.active[jobs[j].0];
            params.push(a.req.params.sampling);
            us.push(a.rng.uniform());
        }
        let ids = sample_rows(&sel, &params, &us).map_err(internal)?;
        for (&(j, _), id) in with.iter().zip(ids) {
            res[j] = Some(id);
        }
        Ok(res)
    }

    /// Advances sequence `i` after its forward with its sampled audio column (after RAS) or its
    /// sampled text token.
    fn advance(
        &mut self,
        i: usize,
        text_id: Option<u32>,
        audio_col: Option<Vec<u32>>,
    ) -> Result<(), GenerationError> {
        let model_cfg = self.parts.model.config();
        let a = &mut self.active[i];
        let (events, next) = if let Some(mut col) = audio_col {
            mask_eos(&mut col, a.req.params.ignore_eos, model_cfg.stream_eos_id);
            a.chunk.state.on_audio_step(&col)
        } else {
            a.chunk.state.on_text_step(text_id.unwrap_or(0))
        };
        let mut text_ids = Vec::new();
        for e in events {
            match e {
                StepEvent::Text(id) => text_ids.push(id),
                StepEvent::AudioColumn(col) => {
                    let d = a.chunk.dedelay.get_or_insert_with(|| {
                        SegmentDedelay::new(model_cfg.num_codebooks, model_cfg.codebook_size as u32)
                    });
                    let frames = d.push(&col);
                    a.chunk.frames.extend(frames.iter().cloned());
                    if a.first_frame.is_none() && !frames.is_empty() {
                        a.first_frame = Some(a.submitted.elapsed());
                    }
                    a.audio.push_frames(frames);
                }
                StepEvent::SegmentEnd => a.chunk.dedelay = None,
            }
        }
        if !text_ids.is_empty() {
            let text = self.parts.tokenizer.decode(&text_ids).unwrap_or_default();
            let ev = Event::Text {
                ids: text_ids,
                text,
            };
            self.audio.event(a.id, &a.events, ev);
        }
        let mut s = SeqInput::new(a.slot);
        match next {
            NextInput::Text(id) => s.push_text(id),
            NextInput::Audio(col) => {
                s.push_audio(&col, PositionKind::AudioOut, model_cfg.audio_out_token_id)
            }
        };
        a.chunk.next = Some(s);
        Ok(())
    }

    /// Moves requests whose chunk finished to their next chunk, or to draining.
    fn finish_chunks(&mut self) {
        let mut i = 0;
        while i < self.active.len() {
            let Some(reason) = self.active[i].chunk.state.finished() else {
                i += 1;
                continue;
            };
            if self.active[i].draining {
                i += 1;
                continue;
            }
            let mut a = self.active.swap_remove(i);
            a.usage.completion_tokens += a.chunk.state.steps();
            a.usage.chunks += 1;
            a.reasons.push(reason.into());
            let frames = std::mem::take(&mut a.chunk.frames);
            if frames.is_empty() {
                let hint = if a.req.force_audio {
                    "the audio ended before its first frame; raise max_new_tokens"
                } else {
                    "the model answered without speaking; set force_audio or check the prompt"
                };
                self.end_failed(a, GenerationError::NoAudio(hint.into()));
                continue;
            }
            let handle = AudioRef(a.clips.len());
            a.clips.push(Codes::from_columns(frames[0].len(), &frames));
            if let Plan::Script { planner } = &mut a.plan {
                if let Err(e) = planner.record_generated(handle) {
                    self.end_failed(a, GenerationError::Internal(e.to_string()));
                    continue;
                }
            }
            self.cache.reset(a.slot);
            match self.next_chunk(&mut a) {
                Ok(true) => {}
                Ok(false) => {
                    a.draining = true;
                    a.audio.finish();
                }
                Err(e) => {
                    self.end_failed(a, e);
                    continue;
                }
            }
            self.active.push(a);
            // The pushed request is now at the end; `i` already points at the next unchecked one.
        }
    }

    /// Cuts every ready audio window and queues them, as one message, for the audio worker
    /// (which batches windows of equal shape across requests).
    fn flush_audio(&mut self) {
        let mut jobs: Vec<WindowJob> = Vec::new();
        for a in self.active.iter_mut() {
            let size = self.cfg.chunk_size(a.chunks_sent);
            let Some(w) = a.audio.next_window(size, size) else {
                continue;
            };
            a.audio.accept(&w);
            a.chunks_sent += 1;
            self.stats.audio_frames_total += w.n_new as u64;
            a.usage.audio_frames += w.n_new;
            jobs.push(WindowJob {
                id: a.id,
                to: a.events.clone(),
                submitted: a.submitted,
                queued: a.started - a.submitted,
                first_frame: a.first_frame,
                frames_received: a.audio.frames_received(),
                window: w,
                span: a.span.clone(),
            });
        }
        if !jobs.is_empty() {
            self.audio.send(AudioMsg::Decode(jobs));
        }
    }

    /// Queues `Finished` (behind their audio) for requests whose audio windows are all queued.
    fn finish_drained(&mut self) {
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].draining && self.active[i].audio.is_done() {
                let a = self.active.swap_remove(i);
                self.end(Ending::Running(Box::new(a)), Outcome::Finished);
            } else {
                i += 1;
            }
        }
    }

    fn fail_many(&mut self, idx: &[usize], e: GenerationError) {
        let mut idx = idx.to_vec();
        idx.sort_unstable();
        idx.dedup();
        for &i in idx.iter().rev() {
            if i < self.active.len() {
                let a = self.active.swap_remove(i);
                self.end_failed(a, e.clone());
            }
        }
    }

    fn end_failed(&mut self, a: Active, e: GenerationError) {
        self.end(Ending::Running(Box::new(a)), Outcome::Failed(e));
    }

    /// The one place a request ends: the client is told (behind the events already queued for
    /// it, so its stream ends in order), the outcome is logged in the request's span and counted
    /// (`EngineStats` and `higgs_requests_total{outcome}`), and its slot or queue place is freed.
    /// Internal errors are logged at `error` (bugs or device faults), the rest at `debug`.
    fn end(&mut self, r: Ending, o: Outcome) {
        let span = match &r {
            Ending::Queued(p) => p.span.clone(),
            Ending::Running(a) => a.span.clone(),
        };
        let _g = span.enter();
        let label = match &o {
            Outcome::Finished => {
                self.stats.requests_finished += 1;
                "finished"
            }
            Outcome::Cancelled => {
                self.stats.requests_cancelled += 1;
                "cancelled"
            }
            Outcome::TimedOut(_) => {
                self.stats.requests_failed += 1;
                "timeout"
            }
            Outcome::Failed(_) | Outcome::FailedByAudio => {
                self.stats.requests_failed += 1;
                "failed"
            }
        };
        match &o {
            Outcome::Failed(e @ GenerationError::Internal(_)) => {
                tracing::error!("request failed: {e}")
            }
            Outcome::Failed(e) => tracing::debug!("request failed: {e}"),
            Outcome::FailedByAudio => tracing::debug!("request failed in the codec"),
            Outcome::TimedOut(t) => tracing::debug!("request timed out after {t:?}"),
            Outcome::Cancelled => tracing::debug!("request cancelled"),
            Outcome::Finished => tracing::debug!("request finished"),
        }
        metrics::counter!("higgs_requests_total", "outcome" => label).increment(1);
        let finished = matches!(o, Outcome::Finished);
        let to_client = match o {
            Outcome::Failed(e) => Some(Event::Failed(e)),
            Outcome::TimedOut(t) => Some(Event::Failed(GenerationError::Timeout(t))),
            // Cancelled: nobody listens; FailedByAudio: the audio worker told the client.
            Outcome::Cancelled | Outcome::FailedByAudio | Outcome::Finished => None,
        };
        match r {
            Ending::Queued(p) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                if let Some(ev) = to_client {
                    let _ = p.events.send(ev);
                }
            }
            Ending::Running(a) => {
                if let Some(ev) = to_client {
                    self.audio.event(a.id, &a.events, ev);
                } else if finished {
                    // Finished: `Finished` goes behind the request's last audio.
                    let reason = if a.reasons.contains(&StopReason::Length) {
                        StopReason::Length
                    } else {
                        StopReason::Stop
                    };
                    metrics::counter!("higgs_audio_frames_total")
                        .increment(a.usage.audio_frames as u64);
                    self.audio.send(AudioMsg::Finish {
                        id: a.id,
                        to: a.events.clone(),
                        reason,
                        usage: a.usage,
                        queue: a.started - a.submitted,
                        submitted: a.submitted,
                    });
                }
                self.cache.reset(a.slot);
                self.free_slots.push(a.slot);
                self.audio.send(AudioMsg::Forget(a.id));
            }
        }
    }
}

/// A request being ended: still without a slot, or running.
enum Ending {
    Queued(Pending),
    Running(Box<Active>),
}

/// How a request ended.
enum Outcome {
    /// Every chunk generated and all audio queued.
    Finished,
    /// Failed with this error (told to the client).
    Failed(GenerationError),
    /// The audio worker failed it and already told the client.
    FailedByAudio,
    /// Its deadline passed.
    TimedOut(Duration),
    /// The client cancelled or went away.
    Cancelled,
}

/// A preparation thread: takes jobs until the engine drops the queue.
fn prep_worker(
    parts: &EngineParts,
    codec: &SharedCodec<'_>,
    jobs: &Mutex<Receiver<PrepJob>>,
    results: Sender<Cmd>,
) {
    loop {
        // The lock is held only while taking a job, never while preparing it.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let result = job
            .span
            .in_scope(|| prepare_request(parts, codec, job.prompting))
            .map(Box::new);
        if results.send(Cmd::Prepared { id: job.id, result }).is_err() {
            return;
        }
    }
}

/// Resolves a request's voices and clips to codes (library lookups, cached reference encodes,
/// uploads encoded) and runs the text pipeline into its chunk plan.
fn prepare_request(
    parts: &EngineParts,
    codec: &SharedCodec<'_>,
    prompting: Prompting,
) -> Result<Prepared, GenerationError> {
    match prompting {
        Prompting::Script {
            transcript,
            voices,
            uploads,
            scene_prompt,
            ref_audio_in_system_message,
            chunking,
            chunk_buffer_size,
        } => {
            let mut resolved = ResolvedVoices::default();
            for u in &uploads {
                let codes = encode_clip(codec, &u.samples)?;
                resolved.insert(&u.name, u.transcript.trim().to_string(), codes);
            }
            for v in &voices {
                if let VoiceSpec::Reference(name) = v {
                    if !resolved.voices.contains_key(name) {
                        let (t, c) = library_voice(parts, codec, name)?;
                        resolved.insert(name, t, c);
                    }
                }
            }
            let profiles = match &parts.voices {
                Some(l) => l
                    .profiles()
                    .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?,
                None => None,
            };
            let text_req = TextRequest {
                transcript,
                scene_prompt,
                voices,
                ref_audio_in_system_message,
                chunking,
            };
            let prepared = prepare_generation(&text_req, &resolved, profiles.as_ref()).map_err(
                |e| match e {
                    higgs_text::TextError::UnknownVoice { .. } => {
                        GenerationError::UnknownVoice(e.to_string())
                    }
                    other => GenerationError::InvalidRequest(other.to_string()),
                },
            )?;
            Ok(Prepared {
                plan: Plan::Script {
                    planner: prepared.into_planner(chunk_buffer_size),
                },
                clips: resolved.clips,
            })
        }
        Prompting::Messages { messages, clips } => {
            let mut out = Vec::with_capacity(clips.len());
            for c in clips {
                out.push(match c {
                    ClipInput::Codes(c) => c,
                    ClipInput::Samples(s) => encode_clip(codec, &s)?,
                    ClipInput::Voice(name) => library_voice(parts, codec, &name)?.1,
                });
            }
            Ok(Prepared {
                plan: Plan::Once {
                    messages,
                    done: false,
                },
                clips: out,
            })
        }
    }
}

fn encode_clip(codec: &SharedCodec<'_>, samples: &[f32]) -> Result<Codes, GenerationError> {
    let t = codec.with(|c| c.encode(samples)).map_err(|e| {
        GenerationError::InvalidRequest(format!("cannot encode reference audio: {e}"))
    })?;
    let (n, frames) = t
        .dims2()
        .map_err(|e| GenerationError::Internal(e.to_string()))?;
    let rows: Vec<u32> = t
        .flatten_all()
        .and_then(|t| t.to_vec1::<u32>())
        .map_err(|e| GenerationError::Internal(e.to_string()))?;
    Codes::new(n, rows)
        .filter(|c| c.frames() == frames)
        .ok_or_else(|| GenerationError::Internal("bad code shape".into()))
}

/// A library voice's transcript and reference codes (encoded once, then cached beside it).
fn library_voice(
    parts: &EngineParts,
    codec: &SharedCodec<'_>,
    name: &str,
) -> Result<(String, Codes), GenerationError> {
    let lib = parts.voices.as_ref().ok_or_else(|| {
        GenerationError::UnknownVoice(format!("{name:?}: no voice library is configured"))
    })?;
    let map = |e: crate::voices::VoiceError| match e {
        crate::voices::VoiceError::Unknown { .. }
        | crate::voices::VoiceError::InvalidName { .. } => {
            GenerationError::UnknownVoice(e.to_string())
        }
        other => GenerationError::InvalidRequest(other.to_string()),
    };
    let transcript = lib.transcript(name).map_err(map)?;
    let codes = lib
        .reference_codes_with(name, codec.codec, |s| codec.with(|c| c.encode(s)))
        .map_err(map)?;
    Ok((transcript, codes))
}

/// Splits off the first `n` positions of `s` (keeping the rest in `s`).
fn split_front(s: &mut SeqInput, n: usize) -> SeqInput {
    let n = n.min(s.len());
    let audio_before = s.kinds[..n].iter().filter(|k| k.is_audio()).count();
    let nc = if s.kinds.iter().any(|k| k.is_audio()) {
        s.codes.len() / s.kinds.iter().filter(|k| k.is_audio()).count().max(1)
    } else {
        0
    };
    let mut front = SeqInput::new(s.slot);
    front.ids = s.ids.drain(..n).collect();
    front.kinds = s.kinds.drain(..n).collect();
    front.codes = s.codes.drain(..audio_before * nc).collect();
    front
}
