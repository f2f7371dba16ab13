//! The engine's limits and streaming policy, what it owns, and its counters.

use std::collections::BTreeMap;

use higgs_model::{HiggsAudioModel, KvCache};
use higgs_text::TextTokenizer;

use crate::voices::VoiceLibrary;

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
    /// Layer-wise streaming decode: each stream's decoder layers keep their last inputs between
    /// chunks (`Codec::decode_step`), so no context frame is decoded twice; off: each chunk is
    /// decoded as a window with `codec_context` frames each side. Same audio either way (up to
    /// summation order). Off until a GPU suite run turns it on.
    pub layer_streaming: bool,
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
    /// How audio rows are sampled on a GPU (candle ops, or the fused kernel).
    pub device_sampler: crate::sampling::DeviceSampler,
    /// The `engine` label of this engine's metrics: its index in an [`crate::EnginePool`].
    pub label: String,
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
            layer_streaming: false,
            warmup: true,
            codec_thread: None,
            profile_sync: false,
            device_sampler: crate::sampling::DeviceSampler::Ops,
            label: "0".into(),
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
    /// Shared with the doors (one instance: one reference-code memo, one view of uploads).
    pub voices: Option<std::sync::Arc<VoiceLibrary>>,
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
    /// Forwards that carried at least one prefill piece (not graphed), their prompt positions,
    /// and their share of `forward_seconds`: what prefill costs the running streams.
    pub prefill_forward_calls: u64,
    pub prefill_positions: u64,
    pub prefill_forward_seconds: f64,
    /// Steps whose forward or sampling failed (each failed the requests of its batch), and how
    /// many of the latest steps failed in a row: a device that keeps failing (a sticky CUDA
    /// error) shows here, and an [`crate::EnginePool`] takes the engine out of rotation.
    pub step_failures: u64,
    pub step_failures_in_a_row: u64,
}

impl EngineStats {
    /// Adds `o`'s counts to these (a pool's totals); `max_seq_len` becomes the largest.
    pub fn add(&mut self, o: &EngineStats) {
        self.queued += o.queued;
        self.running += o.running;
        self.slots += o.slots;
        self.max_seq_len = self.max_seq_len.max(o.max_seq_len);
        self.kv_positions_used += o.kv_positions_used;
        self.forward_calls += o.forward_calls;
        for (k, v) in &o.batch_sizes {
            *self.batch_sizes.entry(*k).or_default() += v;
        }
        self.positions_total += o.positions_total;
        self.audio_frames_total += o.audio_frames_total;
        self.requests_finished += o.requests_finished;
        self.requests_failed += o.requests_failed;
        self.requests_cancelled += o.requests_cancelled;
        self.forward_seconds += o.forward_seconds;
        self.sample_seconds += o.sample_seconds;
        self.codec_seconds += o.codec_seconds;
        self.step_seconds += o.step_seconds;
        self.prefill_forward_calls += o.prefill_forward_calls;
        self.prefill_positions += o.prefill_positions;
        self.prefill_forward_seconds += o.prefill_forward_seconds;
        self.step_failures += o.step_failures;
        self.step_failures_in_a_row = self.step_failures_in_a_row.max(o.step_failures_in_a_row);
    }
}
