//! The serving engine: one thread owns the model, codec and KV cache and runs a step loop. Each
//! step packs the decode position of every running sequence plus prefill pieces of new ones
//! (within a token budget) into ONE model forward, samples every sequence with its own RNG,
//! advances each state machine, de-delays and cuts audio windows, which the audio worker
//! ([`crate::audio_out`]; its own thread when the codec has a GPU stream of its own) decodes
//! (windows of several requests in one codec call) and delivers in order with the request's other
//! events. Long-form requests run their
//! chunks in order while other requests interleave. A request whose event receiver is dropped,
//! that is cancelled, or whose deadline passes is removed at the next step and its slot freed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use higgs_model::{ForwardOptions, KvCache, LogitsRequest, PositionKind, SeqInput};
use higgs_text::{
    generation_prompt, prepare_generation, AudioRef, GenerationRequest as TextRequest,
    GenerationSuffix, LongFormPlanner, Message, VoiceSpec,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::audio_out::{AudioMsg, AudioOut, AudioWorker, Chunk, SharedCodec, WindowJob};
use crate::audio_stream::{SegmentDedelay, WindowPlanner};
use crate::delay::Codes;
use crate::prompt::check_tokenizer_matches;
use crate::prompt::{expand_prompt, mask_eos, special_ids, PromptSpec};
use crate::request::{
    ClipInput, Event, GenerateRequest, GenerationError, Prompting, StopReason, SubmitError, Usage,
};
use crate::sampling::{sample_rows_with, SamplingParams, SeqRng};
use crate::state::{GenState, NextInput, StepEvent};
use crate::voices::ResolvedVoices;

mod config;
mod handle;
mod lifecycle;
mod prepare;
mod sample;

pub use config::{EngineConfig, EngineParts, EngineStats};
use handle::{Cmd, Pending, Shared};
pub use handle::{EngineHandle, Load, RequestStream};
use lifecycle::{Ending, Outcome};
use prepare::{
    expand_for, prep_worker, prompt_suffix, too_long, FitLimits, PrepJob, Prepared, PREP_THREADS,
};

/// A prepared request waiting for a slot.
struct Queued {
    p: Pending,
    prepared: Prepared,
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
        outstanding: AtomicUsize::new(0),
        max_queue: config.max_queue,
        max_running: config.max_running,
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
        label: Arc::from(config.label.as_str()),
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
                let worker = AudioWorker::new(&codec, failed_tx, shared.codec_nanos.clone())
                    .with_label(shared.label.clone())
                    .with_step_capacity(if config.layer_streaming { config.max_running } else { 0 });
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
        // A checkpoint without a text head has only audio logits to warm.
        let logits = if model.has_text_head() {
            LogitsRequest::TEXT
        } else {
            LogitsRequest::AUDIO
        };
        let mut s = SeqInput::new(slot).with_logits(logits);
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
        sample_rows_with(&logits, &params, &vec![0.5; nc], self.cfg.device_sampler)
            .map_err(|e| format!("sampler: {e}"))?;
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

    /// Counts a step whose forward or sampling failed (its requests were failed).
    fn step_failed(&mut self) {
        self.stats.step_failures += 1;
        self.stats.step_failures_in_a_row += 1;
        metrics::counter!("higgs_engine_step_failures_total", "engine" => self.shared.label.clone())
            .increment(1);
    }

    fn publish_stats(&mut self) {
        self.stats.codec_seconds = self.shared.codec_nanos.load(Ordering::Relaxed) as f64 * 1e-9;
        self.stats.queued = self.waiting.len();
        self.stats.running = self.active.len();
        self.stats.kv_positions_used = self.active.iter().map(|a| self.cache.len(a.slot)).sum();
        metrics::gauge!("higgs_queue_depth", "engine" => self.shared.label.clone())
            .set(self.stats.queued as f64);
        metrics::gauge!("higgs_running_sequences", "engine" => self.shared.label.clone())
            .set(self.stats.running as f64);
        metrics::gauge!("higgs_kv_usage_ratio", "engine" => self.shared.label.clone()).set(
            self.stats.kv_positions_used as f64
                / (self.cfg.max_running * self.cfg.max_seq_len) as f64,
        );
        if let Ok(mut s) = self.shared.stats.lock() {
            *s = self.stats.clone();
        }
    }

    fn admit(&mut self) {
        while !self.free_slots.is_empty() {
            let Some(q) = self.waiting.pop_front() else {
                break;
            };
            let slot = self.free_slots.pop().unwrap_or_default();
            match self.start_request(q, slot) {
                Ok((a, chunk)) => {
                    let _ = a.events.send(Event::Started {
                        queue: a.started - a.submitted,
                    });
                    self.audio.event(a.id, &a.events, chunk);
                    metrics::histogram!("higgs_queue_seconds", "engine" => self.shared.label.clone())
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
    ) -> Result<(Active, Event), (Box<Active>, GenerationError)> {
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
            // Layer-wise steps carry the left context in the decoder state.
            audio: WindowPlanner::new(
                n,
                if self.cfg.layer_streaming {
                    0
                } else {
                    self.context
                },
                self.context,
            ),
            usage: Usage {
                auto_chunk_words: prepared.auto_chunk_words,
                ..Usage::default()
            },
            reasons: Vec::new(),
            first_frame: None,
            chunks_sent: 0,
            draining: false,
        };
        match self.next_chunk(&mut a) {
            Ok(Some(chunk)) => Ok((a, chunk)),
            Ok(None) => Err((
                Box::new(a),
                GenerationError::InvalidRequest(
                    "the transcript produced no chunk to generate".into(),
                ),
            )),
            Err(e) => Err((Box::new(a), e)),
        }
    }

    /// Builds the next chunk's prompt; `None` when the request has no more chunks, else the
    /// [`Event::Chunk`] that announces it.
    fn next_chunk(&self, a: &mut Active) -> Result<Option<Event>, GenerationError> {
        let tok = &self.parts.tokenizer;
        let suffix = prompt_suffix(a.req.force_audio);
        let invalid = |e: higgs_text::TextError| GenerationError::InvalidRequest(e.to_string());
        let (prompt, announce) = match &mut a.plan {
            Plan::Script { planner } => {
                let chunks = planner.num_chunks();
                match planner
                    .next_step()
                    .map_err(|e| GenerationError::Internal(e.to_string()))?
                {
                    Some(step) => (
                        step.prompt(tok, suffix),
                        Event::Chunk {
                            index: step.index,
                            chunks,
                        },
                    ),
                    None => return Ok(None),
                }
            }
            Plan::Once { messages, done } => {
                if *done {
                    return Ok(None);
                }
                *done = true;
                (
                    generation_prompt(tok, messages, suffix),
                    Event::Chunk {
                        index: 0,
                        chunks: 1,
                    },
                )
            }
        };
        let prompt = prompt.map_err(invalid)?;
        let max_new = a.req.params.max_new_tokens;
        let mut expanded = expand_for(self.parts, &prompt, &a.clips)?;
        // A later chunk carries the earlier chunks' audio: drop the oldest of them until it fits.
        while expanded.seq.len() + max_new > self.cfg.max_seq_len {
            let Plan::Script { planner } = &mut a.plan else {
                break;
            };
            let Some(step) = planner
                .evict_oldest()
                .map_err(|e| GenerationError::Internal(e.to_string()))?
            else {
                break;
            };
            a.usage.context_chunks_dropped += 1;
            tracing::info!(
                chunk = step.index,
                "dropped the oldest generated chunk from the context to fit the sequence limit"
            );
            expanded = expand_for(
                self.parts,
                &step.prompt(tok, suffix).map_err(invalid)?,
                &a.clips,
            )?;
        }
        let need = expanded.seq.len() + max_new;
        if need > self.cfg.max_seq_len {
            return Err(too_long(
                expanded.seq.len(),
                max_new,
                self.cfg.max_seq_len,
                false,
            ));
        }
        a.usage.prompt_tokens += expanded.prompt_tokens;
        let cfg = self.parts.model.config();
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
        Ok(Some(announce))
    }

    /// One engine step: a single batched forward for every running sequence.
    fn step(&mut self) {
        let t0 = Instant::now();
        let mut batch: Vec<SeqInput> = Vec::new();
        let mut owners: Vec<(usize, bool)> = Vec::new(); // (index into active, final piece)
        let mut budget = self.cfg.prefill_budget.max(1);
        let mut prefill_positions = 0usize;
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
                prefill_positions += take;
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
                self.step_failed();
                return;
            }
        };
        if self.cfg.profile_sync {
            let _ = self.parts.model.device().synchronize();
        }
        let forward_s = t_fwd.elapsed().as_secs_f64();
        self.stats.forward_seconds += forward_s;
        if prefill_positions > 0 {
            self.stats.prefill_forward_calls += 1;
            self.stats.prefill_positions += prefill_positions as u64;
            self.stats.prefill_forward_seconds += forward_s;
        }
        self.stats.forward_calls += 1;
        *self.stats.batch_sizes.entry(batch.len()).or_default() += 1;
        self.stats.positions_total += positions as u64;
        metrics::counter!("higgs_forward_calls_total", "engine" => self.shared.label.clone())
            .increment(1);
        metrics::histogram!("higgs_batch_size", "engine" => self.shared.label.clone())
            .record(batch.len() as f64);
        metrics::counter!("higgs_positions_total", "engine" => self.shared.label.clone())
            .increment(positions as u64);

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
                self.step_failed();
                return;
            }
        };
        let text_ids = match self.sample_text(&out.text_logits, &jobs, &audio_cols) {
            Ok(t) => t,
            Err(e) => {
                let failed: Vec<usize> = jobs.iter().map(|j| j.0).collect();
                self.fail_many(&failed, e);
                self.step_failed();
                return;
            }
        };
        self.stats.sample_seconds += t_sample.elapsed().as_secs_f64();
        self.stats.step_failures_in_a_row = 0;
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
        metrics::histogram!("higgs_step_seconds", "engine" => self.shared.label.clone()).record(dt);
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
                // Queued behind the audio already cut, so it follows the earlier chunks' events.
                Ok(Some(ev)) => self.audio.event(a.id, &a.events, ev),
                Ok(None) => {
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
        let flush = self.parts.codec.step_flush_frames();
        for a in self.active.iter_mut() {
            let size = self.cfg.chunk_size(a.chunks_sent);
            let before = a.audio.frames_emitted();
            let chunk = if self.cfg.layer_streaming {
                let Some(s) = a.audio.next_step(size, size, flush) else {
                    continue;
                };
                a.audio.accept_step(&s);
                Chunk::Step(s)
            } else {
                let Some(w) = a.audio.next_window(size, size) else {
                    continue;
                };
                a.audio.accept(&w);
                Chunk::Window(w)
            };
            let n_new = a.audio.frames_emitted() - before;
            a.chunks_sent += 1;
            self.stats.audio_frames_total += n_new as u64;
            a.usage.audio_frames += n_new;
            jobs.push(WindowJob {
                id: a.id,
                to: a.events.clone(),
                submitted: a.submitted,
                queued: a.started - a.submitted,
                first_frame: a.first_frame,
                frames_received: a.audio.frames_received(),
                chunk,
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
