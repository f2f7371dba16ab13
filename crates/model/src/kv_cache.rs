//! Slot-based KV cache: one pre-allocated `[slots, kv_heads, max_len, head_dim]` buffer per layer
//! for K and for V. A sequence owns a slot for its lifetime; a forward pass appends its new
//! positions in place (`slice_set`), so no step reallocates. The serving engine decides how many
//! slots of which length fit its memory budget.

use candle_core::{DType, Device, Tensor};

use crate::config::HiggsConfig;
use crate::error::ForwardError;

pub struct KvCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    lens: Vec<usize>,
    /// Per slot and cached position: was it an audio (code) position? Needed only by
    /// fast-forward layers, where text queries must not attend to audio keys.
    audio: Vec<Vec<bool>>,
    max_len: usize,
    /// CUDA graphs of the decode step over this cache's tensors.
    pub(crate) graphs: crate::decode_graph::DecodeGraphs,
}

impl KvCache {
    /// Allocates `num_slots` sequences of up to `max_len` positions each.
    pub fn new(
        cfg: &HiggsConfig,
        num_slots: usize,
        max_len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let shape = (num_slots, cfg.num_key_value_heads, max_len, cfg.head_dim);
        let mut k = Vec::with_capacity(cfg.num_hidden_layers);
        let mut v = Vec::with_capacity(cfg.num_hidden_layers);
        for _ in 0..cfg.num_hidden_layers {
            k.push(Tensor::zeros(shape, dtype, device)?);
            v.push(Tensor::zeros(shape, dtype, device)?);
        }
        Ok(Self {
            k,
            v,
            lens: vec![0; num_slots],
            audio: vec![Vec::new(); num_slots],
            max_len,
            graphs: crate::decode_graph::DecodeGraphs::new(device),
        })
    }

    /// Turns the fixed-shape decode-step path on or off for this cache: CUDA-graph capture and
    /// replay on CUDA (on by default unless [`crate::ModelOptions::cuda_graphs`] is off); on other
    /// devices (off by default) the same step body runs eagerly, which lets CPU tests check what
    /// graphs replay.
    pub fn set_decode_graphs(&mut self, on: bool) {
        self.graphs.enabled = on;
    }

    /// How decode steps used CUDA graphs so far.
    pub fn graph_stats(&self) -> crate::GraphStats {
        self.graphs.stats
    }

    /// Bytes of cache per position (all layers, K and V) for a config and dtype: the unit the
    /// engine uses to size its budget.
    pub fn bytes_per_position(cfg: &HiggsConfig, dtype: DType) -> usize {
        2 * cfg.num_hidden_layers * cfg.kv_dim() * dtype.size_in_bytes()
    }

    pub fn num_slots(&self) -> usize {
        self.lens.len()
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of cached positions of `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens.get(slot).copied().unwrap_or(0)
    }

    pub fn is_empty(&self, slot: usize) -> bool {
        self.len(slot) == 0
    }

    /// Frees a slot for reuse (its stale contents are never read: reads stop at `len`).
    pub fn reset(&mut self, slot: usize) {
        if let Some(l) = self.lens.get_mut(slot) {
            *l = 0;
            self.audio[slot].clear();
        }
    }

    /// Drops positions past `len` (e.g. to re-run a step).
    pub fn truncate(&mut self, slot: usize, len: usize) {
        if let Some(l) = self.lens.get_mut(slot) {
            *l = (*l).min(len);
            self.audio[slot].truncate(*l);
        }
    }

    pub(crate) fn check_room(&self, slot: usize, new: usize) -> Result<usize, ForwardError> {
        let past = *self.lens.get(slot).ok_or_else(|| {
            ForwardError::Cache(format!(
                "slot {slot} out of range (cache has {} slots)",
                self.lens.len()
            ))
        })?;
        if past + new > self.max_len {
            return Err(ForwardError::Cache(format!(
                "slot {slot} would hold {} positions but holds at most {}",
                past + new,
                self.max_len
            )));
        }
        Ok(past)
    }

    pub(crate) fn audio_flags(&self, slot: usize) -> &[bool] {
        &self.audio[slot]
    }

    /// Writes K/V `[R, kv_dim]` of one new position per slot of `lo..lo + r` into layer `li` at
    /// `write_idx` (`[R * kv_heads, 1, head_dim]` u32 positions; `u32::MAX` skips the slot).
    pub(crate) fn write_slot_range(
        &self,
        li: usize,
        k: &Tensor,
        v: &Tensor,
        lo: usize,
        r: usize,
        write_idx: &Tensor,
    ) -> candle_core::Result<()> {
        for (src, dst) in [(k, &self.k[li]), (v, &self.v[li])] {
            let (_, nkv, max_len, hd) = dst.dims4()?;
            let dst = dst.narrow(0, lo, r)?.reshape((r * nkv, max_len, hd))?;
            dst.scatter_set(write_idx, &src.reshape((r * nkv, 1, hd))?, 1)?;
        }
        Ok(())
    }

    /// Writes rows `start..start + len` of K/V `[N, kv_dim]` into layer `li` at positions
    /// `past..past + len` of `slot`.
    pub(crate) fn write_piece(
        &self,
        li: usize,
        k: &Tensor,
        v: &Tensor,
        (start, len): (usize, usize),
        slot: usize,
        past: usize,
    ) -> candle_core::Result<()> {
        for (src, dst) in [(k, &self.k[li]), (v, &self.v[li])] {
            let (_, nkv, _, hd) = dst.dims4()?;
            let rows = src
                .narrow(0, start, len)?
                .reshape((len, nkv, hd))?
                .transpose(0, 1)?
                .unsqueeze(0)?
                .contiguous()?;
            dst.narrow(0, slot, 1)?.slice_set(&rows, 2, past)?;
        }
        Ok(())
    }

    /// Records that `flags.len()` positions were appended to `slot` (after every layer wrote).
    pub(crate) fn commit(&mut self, slot: usize, flags: &[bool]) {
        self.lens[slot] += flags.len();
        self.audio[slot].extend_from_slice(flags);
    }
}
