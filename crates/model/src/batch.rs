//! How a batch is packed: the row-level [`Plan`] of a forward's sequences, and the groups built
//! from it once per forward and used by every layer (one-position sequences over a slot range,
//! padded prefill pieces, the batched K/V writes, the text/audio row routing). [`PackedStep`]
//! is the attention of the eager forward over them.

use candle_core::{DType, Device, Tensor};

use crate::attention::{Attention, KeyMask};
use crate::config::HiggsConfig;
use crate::decoder_layer::StepAttention;
use crate::error::ForwardError;
use crate::kv_cache::KvCache;
use crate::modeling_higgs_audio::{PositionKind, SeqInput};
use crate::options::ModelOptions;

impl Plan {
    /// Validates the batch and flattens it into row-level arrays.
    pub fn new(
        batch: &[SeqInput],
        cache: &KvCache,
        cfg: &HiggsConfig,
    ) -> Result<Self, ForwardError> {
        if batch.is_empty() {
            return Err(ForwardError::Input("empty batch".into()));
        }
        let nc = cfg.num_codebooks;
        let rows_per_cb = cfg.codebook_rows() as u32;
        let mut p = Self::default();
        for (s, seq) in batch.iter().enumerate() {
            let n = seq.len();
            if n == 0 {
                return Err(ForwardError::Input(format!(
                    "sequence {s} has no new positions"
                )));
            }
            if seq.ids.len() != n {
                return Err(ForwardError::Input(format!(
                    "sequence {s}: {} ids for {n} positions",
                    seq.ids.len()
                )));
            }
            if batch[..s].iter().any(|o| o.slot == seq.slot) {
                return Err(ForwardError::Input(format!(
                    "slot {} appears twice in the batch",
                    seq.slot
                )));
            }
            let n_audio = seq.kinds.iter().filter(|k| k.is_audio()).count();
            if seq.codes.len() != n_audio * nc {
                return Err(ForwardError::Input(format!(
                    "sequence {s}: {} codes for {n_audio} audio positions of {nc} codebooks",
                    seq.codes.len()
                )));
            }
            let past = cache.check_room(seq.slot, n)?;
            p.seq_start.push(p.kinds.len());
            p.seq_past.push(past);
            let mut codes = seq.codes.chunks(nc);
            for (j, (&kind, &id)) in seq.kinds.iter().zip(&seq.ids).enumerate() {
                let row = p.kinds.len() as u32;
                p.positions.push((past + j) as u32);
                p.kinds.push(kind);
                p.audio_flags.push(kind.is_audio());
                if kind.is_audio() {
                    let col = codes.next().unwrap_or(&[]);
                    for (k, &c) in col.iter().enumerate() {
                        if c >= rows_per_cb {
                            return Err(ForwardError::Input(format!(
                                "sequence {s}: audio code {c} of codebook {k} is out of range (< {rows_per_cb})"
                            )));
                        }
                        p.audio_codes.push(c + k as u32 * rows_per_cb);
                    }
                    p.audio_rows.push(row);
                } else {
                    if id as usize >= cfg.vocab_size {
                        return Err(ForwardError::Input(format!(
                            "sequence {s}: token id {id} is outside the vocabulary ({})",
                            cfg.vocab_size
                        )));
                    }
                    p.text_rows.push(row);
                    p.text_ids.push(id);
                }
            }
            p.slots.push(seq.slot);
            p.lens.push(n);
        }
        Ok(p)
    }

    /// `(first packed row, new positions, cached positions, slot)` of sequence `s`.
    pub fn piece(&self, s: usize) -> (usize, usize, usize, usize) {
        (
            self.seq_start[s],
            self.lens[s],
            self.seq_past[s],
            self.slots[s],
        )
    }

    /// Whether a fast-forward layer must hide audio keys from sequence `s`'s text queries.
    fn needs_audio_mask(&self, s: usize, cache: &KvCache) -> bool {
        let (start, len, slot) = (self.seq_start[s], self.lens[s], self.slots[s]);
        let new_flags = &self.audio_flags[start..start + len];
        (new_flags.iter().any(|&f| f) || cache.audio_flags(slot).iter().any(|&f| f))
            && new_flags.iter().any(|&f| !f)
    }

    /// Additive mask `[len, total]` for sequence `s`: causal, and in fast-forward layers text
    /// queries do not see audio keys. `None` when nothing is masked (single decode position).
    fn attention_mask(
        &self,
        s: usize,
        cache: &KvCache,
        fast_forward: bool,
        dev: &Device,
    ) -> Result<Option<Tensor>, ForwardError> {
        let (start, len, past, slot) = self.piece(s);
        let total = past + len;
        let new_flags = &self.audio_flags[start..start + len];
        let past_flags = cache.audio_flags(slot);
        let mask_audio = fast_forward
            && (new_flags.iter().any(|&f| f) || past_flags.iter().any(|&f| f))
            && new_flags.iter().any(|&f| !f);
        if len == 1 && !mask_audio {
            return Ok(None);
        }
        let is_audio_key = |j: usize| {
            if j < past {
                past_flags[j]
            } else {
                new_flags[j - past]
            }
        };
        let mut m = vec![0f32; len * total];
        for i in 0..len {
            let qpos = past + i;
            let text_query = !new_flags[i];
            for j in 0..total {
                if j > qpos || (mask_audio && text_query && is_audio_key(j)) {
                    m[i * total + j] = f32::NEG_INFINITY;
                }
            }
        }
        Ok(Some(Tensor::from_vec(m, (len, total), dev)?))
    }
}

/// Row-level view of a packed batch.
#[derive(Default)]
pub(crate) struct Plan {
    pub slots: Vec<usize>,
    pub lens: Vec<usize>,
    pub seq_start: Vec<usize>,
    pub seq_past: Vec<usize>,
    pub kinds: Vec<PositionKind>,
    pub audio_flags: Vec<bool>,
    pub positions: Vec<u32>,
    pub text_rows: Vec<u32>,
    pub text_ids: Vec<u32>,
    pub audio_rows: Vec<u32>,
    pub audio_codes: Vec<u32>,
}

/// The one-position sequences of a forward, attended in one batched matmul over the slot range
/// `lo..lo + r` of the cache. Slots of the range that are not in the group are computed too (their
/// rows are never used) and never written.
pub(crate) struct DecodeGroup {
    lo: usize,
    r: usize,
    /// Longest attended length in the group (keys read per slot).
    tmax: usize,
    /// Sequence indices (batch order) and their slot offsets `slot - lo`.
    seqs: Vec<usize>,
    offs: Vec<u32>,
    /// `[R]` packed row feeding each slot of the range (None: the rows are the range, in order).
    src_map: Option<Tensor>,
    q_map: Option<Tensor>,
    /// Rows of the group are exactly the packed rows `0..N` in slot order.
    identity: bool,
    /// `[R * kv_heads, 1, head_dim]` u32: write position per slot and KV head (u32::MAX = skip).
    write_idx: Tensor,
    /// `[R, 1, 1, 1, tmax]` f32 additive mask: keys at or past a slot's length get f32::MIN.
    mask: Tensor,
}

impl DecodeGroup {
    fn new(
        plan: &Plan,
        cache: &KvCache,
        cfg: &HiggsConfig,
        dev: &Device,
    ) -> candle_core::Result<Option<Self>> {
        let seqs: Vec<usize> = (0..plan.slots.len())
            .filter(|&s| plan.lens[s] == 1)
            .collect();
        if seqs.is_empty() {
            return Ok(None);
        }
        let lo = seqs.iter().map(|&s| plan.slots[s]).min().unwrap_or(0);
        let hi = seqs.iter().map(|&s| plan.slots[s]).max().unwrap_or(0);
        let r = hi - lo + 1;
        let tmax = seqs
            .iter()
            .map(|&s| plan.seq_past[s] + 1)
            .max()
            .unwrap_or(1)
            .min(cache.max_len());
        let first_row = plan.seq_start[seqs[0]] as u32;
        let mut map = vec![first_row; r];
        let mut pos = vec![u32::MAX; r];
        let mut lens = vec![tmax as f32; r];
        let mut offs = Vec::with_capacity(seqs.len());
        for &s in &seqs {
            let off = plan.slots[s] - lo;
            map[off] = plan.seq_start[s] as u32;
            pos[off] = plan.seq_past[s] as u32;
            lens[off] = (plan.seq_past[s] + 1) as f32;
            offs.push(off as u32);
        }
        let identity = seqs.len() == plan.slots.len()
            && r == seqs.len()
            && map.iter().enumerate().all(|(i, &m)| m == i as u32);
        let src_map = if identity {
            None
        } else {
            Some(Tensor::from_vec(map, r, dev)?)
        };
        let (nkv, hd) = (cfg.num_key_value_heads, cfg.head_dim);
        let write_idx = Tensor::from_vec(pos, (r, 1, 1), dev)?
            .broadcast_as((r, nkv, hd))?
            .contiguous()?
            .reshape((r * nkv, 1, hd))?;
        let keys = Tensor::arange(0u32, tmax as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((1, 1, 1, 1, tmax))?;
        let lens = Tensor::from_vec(lens, (r, 1, 1, 1, 1), dev)?;
        let mask = keys
            .broadcast_ge(&lens)?
            .to_dtype(DType::F32)?
            .affine(f32::MIN as f64, 0.0)?;
        Ok(Some(Self {
            lo,
            r,
            tmax,
            seqs,
            offs,
            q_map: src_map.clone(),
            src_map,
            identity,
            write_idx,
            mask,
        }))
    }
}

/// The attention of the eager forward over a packed batch: K/V written for every new position,
/// then the one-position sequences that need no special mask attend in ONE batched matmul over
/// their slot range, prefill pieces in one padded group where they can, the rest (long pieces,
/// fast-forward text queries that must not see audio keys) per sequence.
pub(crate) struct PackedStep<'a> {
    plan: &'a Plan,
    decode: Option<DecodeGroup>,
    prefill: Option<PrefillGroup>,
    write: Option<PieceWrites>,
    cos: Tensor,
    sin: Tensor,
    dev: Device,
}

impl<'a> PackedStep<'a> {
    /// `cos`, `sin`: RoPE tables of the packed rows.
    pub fn new(
        plan: &'a Plan,
        cache: &KvCache,
        cfg: &HiggsConfig,
        opts: &ModelOptions,
        (cos, sin): (Tensor, Tensor),
        dev: &Device,
    ) -> candle_core::Result<Self> {
        let decode = DecodeGroup::new(plan, cache, cfg, dev)?;
        let prefill = match opts.prefill_group {
            true => PrefillGroup::new(plan, cache, cfg, dev)?,
            false => None,
        };
        let write = match opts.batched_kv_write {
            true => PieceWrites::new(plan, decode.is_some(), cache, cfg, dev)?,
            false => None,
        };
        Ok(Self {
            plan,
            decode,
            prefill,
            write,
            cos,
            sin,
            dev: dev.clone(),
        })
    }

    /// The one-position sequences with one scatter per tensor over their slot range, the other
    /// pieces with one batched write (or one copy per piece).
    fn write(&self, li: usize, k: &Tensor, v: &Tensor, cache: &KvCache) -> candle_core::Result<()> {
        let group = self.decode.as_ref();
        if let Some(g) = group {
            let (k, v) = match &g.src_map {
                Some(m) => (k.index_select(m, 0)?, v.index_select(m, 0)?),
                None => (k.clone(), v.clone()),
            };
            cache.write_slot_range(li, &k, &v, g.lo, g.r, &g.write_idx)?;
        }
        if let Some(w) = &self.write {
            return w.write(li, k, v, cache);
        }
        for s in 0..self.plan.slots.len() {
            let (start, len, past, slot) = self.plan.piece(s);
            if len == 1 && group.is_some() {
                continue;
            }
            cache.write_piece(li, k, v, (start, len), slot, past)?;
        }
        Ok(())
    }
}

impl StepAttention for PackedStep<'_> {
    fn attend(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        fast_forward: bool,
        cache: &KvCache,
    ) -> Result<Tensor, ForwardError> {
        let plan = self.plan;
        let (n, _) = h.dims2()?;
        let (k, v) = attn.keys_values(h, &self.cos, &self.sin)?;
        self.write(li, &k, &v, cache)?;
        let q = attn.queries(h, &self.cos, &self.sin)?;
        let (kc, vc) = (&cache.k[li], &cache.v[li]);
        let mut pieces: Vec<(Vec<u32>, Tensor)> = Vec::new();
        let mut batched = vec![false; plan.slots.len()];
        if let Some(g) = &self.decode {
            let members: Vec<usize> = g
                .seqs
                .iter()
                .enumerate()
                .filter(|(_, &s)| !(fast_forward && plan.needs_audio_mask(s, cache)))
                .map(|(m, _)| m)
                .collect();
            if !members.is_empty() {
                let qr = match &g.q_map {
                    Some(m) => q.index_select(m, 0)?,
                    None => q.clone(),
                };
                let mask = KeyMask::Additive(&g.mask);
                let o = attn.attend_slot_range(&qr, kc, vc, g.lo, g.r, g.tmax, mask)?;
                if members.len() == g.seqs.len() && g.identity {
                    pieces.push((Vec::new(), o));
                } else {
                    let offs: Vec<u32> = members.iter().map(|&m| g.offs[m]).collect();
                    let idx = Tensor::from_vec(offs, members.len(), &self.dev)?;
                    let rows = members
                        .iter()
                        .map(|&m| plan.seq_start[g.seqs[m]] as u32)
                        .collect();
                    pieces.push((rows, o.index_select(&idx, 0)?));
                }
                for &m in &members {
                    batched[g.seqs[m]] = true;
                }
            }
        }
        if let Some(pg) = &self.prefill {
            // In a fast-forward layer text queries must not see audio keys: those pieces (and
            // then the whole group, whose mask does not know it) attend per sequence.
            let usable = !fast_forward || pg.seqs.iter().all(|&s| !plan.needs_audio_mask(s, cache));
            if usable {
                let o = attn.attend_prefill_group(&q, pg, kc, vc)?;
                let rows = pg
                    .seqs
                    .iter()
                    .flat_map(|&s| {
                        let start = plan.seq_start[s] as u32;
                        start..start + plan.lens[s] as u32
                    })
                    .collect();
                pieces.push((rows, o));
                for &s in &pg.seqs {
                    batched[s] = true;
                }
            }
        }
        for (s, &done) in batched.iter().enumerate() {
            if done {
                continue;
            }
            let piece = plan.piece(s);
            let mask = plan.attention_mask(s, cache, fast_forward, &self.dev)?;
            let o = attn.attend_piece(&q, kc, vc, piece, mask.as_ref())?;
            let (start, len) = (piece.0 as u32, piece.1 as u32);
            pieces.push(((start..start + len).collect(), o));
        }
        let o = assemble_rows(pieces, n, &self.dev)?;
        Ok(attn.output(&o)?)
    }

    fn write_kv(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        cache: &KvCache,
    ) -> Result<(), ForwardError> {
        let (k, v) = attn.keys_values(h, &self.cos, &self.sin)?;
        Ok(self.write(li, &k, &v, cache)?)
    }
}

/// The K/V cache writes of every piece not written by the decode group (prefill pieces, and all
/// pieces when there is no group) as ONE launch per layer and K/V, instead of ~3 launches per
/// piece (narrow/transpose copy, slice_set): 50 prompts in a prefill step were ~8 000 launches.
/// On CUDA the write is our `kv_write_rows` kernel: candle's scatter, used for it first, runs
/// one thread per head-dim element and walks the M·kv_heads destination rows serially, which
/// halved the engine's throughput under load. The CPU uses candle's scatter (same result).
pub(crate) struct PieceWrites {
    /// `[M]` u32: the packed rows written, in order.
    rows: Tensor,
    /// Whether `rows` is `0..N` (every packed row, in order).
    all: bool,
    /// `[M * kv_heads]` u32: destination row of each (row, KV head) in the layer's cache viewed
    /// as `[slots * kv_heads * max_len, head_dim]`; on the CPU broadcast to `[M * kv_heads,
    /// head_dim]` for candle's scatter.
    ids: Tensor,
}

impl PieceWrites {
    fn new(
        plan: &Plan,
        has_decode_group: bool,
        cache: &KvCache,
        cfg: &HiggsConfig,
        dev: &Device,
    ) -> candle_core::Result<Option<Self>> {
        let (nkv, hd, max_len) = (cfg.num_key_value_heads, cfg.head_dim, cache.max_len());
        // Destination rows must fit u32 indices.
        if cache.num_slots() * nkv * max_len > u32::MAX as usize {
            return Ok(None);
        }
        let mut rows: Vec<u32> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        for s in 0..plan.slots.len() {
            let (start, len, past, slot) = plan.piece(s);
            if len == 1 && has_decode_group {
                continue;
            }
            for j in 0..len {
                rows.push((start + j) as u32);
                for g in 0..nkv {
                    ids.push(((slot * nkv + g) * max_len + past + j) as u32);
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let m = rows.len();
        let all = m == plan.kinds.len() && rows.iter().enumerate().all(|(i, &r)| r == i as u32);
        let ids = Tensor::from_vec(ids, m * nkv, dev)?;
        let ids = if dev.is_cuda() {
            ids
        } else {
            ids.reshape((m * nkv, 1))?
                .broadcast_as((m * nkv, hd))?
                .contiguous()?
        };
        let rows = Tensor::from_vec(rows, m, dev)?;
        Ok(Some(Self { rows, all, ids }))
    }

    /// Writes the pieces' rows of `k`, `v` (`[N, kv_heads * head_dim]`) into layer `li`'s cache.
    fn write(&self, li: usize, k: &Tensor, v: &Tensor, cache: &KvCache) -> candle_core::Result<()> {
        for (src, dst) in [(k, &cache.k[li]), (v, &cache.v[li])] {
            #[cfg(feature = "cuda")]
            if src.device().is_cuda() {
                higgs_kernels::kv_write_rows(dst, &src.contiguous()?, &self.rows, &self.ids)?;
                continue;
            }
            let src = if self.all {
                src.contiguous()?
            } else {
                src.index_select(&self.rows, 0)?
            };
            let (m, kv_dim) = src.dims2()?;
            let hd = self.ids.dim(1)?;
            let src = src.reshape((m * kv_dim / hd, hd))?;
            let rows = dst.elem_count() / hd;
            // A contiguous reshape shares the cache's storage: the scatter writes in place.
            dst.reshape((rows, hd))?.scatter_set(&self.ids, &src, 0)?;
        }
        Ok(())
    }
}

/// Prefill pieces (more than one new position) attended together, padded to the longest piece.
/// Without it each piece costs ~12 kernel launches per layer: 32 prompts admitted in one step
/// meant ~10 000 launches, which dominated the time to first audio under load.
pub(crate) struct PrefillGroup {
    /// Sequence indices (batch order).
    pub seqs: Vec<usize>,
    /// Slot range `lo..lo + r` holding the pieces, and `[S]` u32 slot offsets in it.
    pub lo: usize,
    pub r: usize,
    pub offs: Tensor,
    pub lmax: usize,
    pub tmax: usize,
    /// `[S * Lmax]` packed row of each padded query (padding: the piece's first row).
    pub q_rows: Tensor,
    /// `[sum len]` indices of the real queries in the padded `[S * Lmax]` output.
    pub valid: Tensor,
    /// `[S, 1, 1, Lmax, Tmax]` f32 additive causal mask (`f32::MIN` where hidden).
    pub mask: Tensor,
}

/// Score elements (f32) one prefill group may need; longer pieces attend alone.
const PREFILL_GROUP_SCORES: usize = 1 << 26;

impl PrefillGroup {
    fn new(
        plan: &Plan,
        cache: &KvCache,
        cfg: &HiggsConfig,
        dev: &Device,
    ) -> candle_core::Result<Option<Self>> {
        let heads = cfg.num_attention_heads;
        // K (or V) elements of one slot and position.
        let kv_rows_per_slot = cfg.num_key_value_heads * cfg.head_dim;
        let mut cand: Vec<usize> = (0..plan.slots.len())
            .filter(|&s| plan.lens[s] > 1)
            .collect();
        if cand.len() < 2 {
            return Ok(None);
        }
        // Shortest first, while the padded scores stay within the budget.
        cand.sort_by_key(|&s| (plan.seq_past[s] + plan.lens[s], plan.lens[s]));
        let mut seqs = Vec::new();
        let (mut lmax, mut tmax) = (0usize, 0usize);
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for s in cand {
            let l = lmax.max(plan.lens[s]);
            let t = tmax
                .max(plan.seq_past[s] + plan.lens[s])
                .min(cache.max_len());
            let (l2, h2) = (lo.min(plan.slots[s]), hi.max(plan.slots[s]));
            // f32 scores, and the elements of the slot range's keys copied per layer.
            let scores = (seqs.len() + 1) * heads * l * t;
            let copied = (h2 + 1 - l2) * kv_rows_per_slot * t;
            if scores > PREFILL_GROUP_SCORES || copied > PREFILL_GROUP_SCORES {
                break;
            }
            seqs.push(s);
            (lmax, tmax, lo, hi) = (l, t, l2, h2);
        }
        if seqs.len() < 2 {
            return Ok(None);
        }
        let n = seqs.len();
        let mut q_rows = Vec::with_capacity(n * lmax);
        let mut valid = Vec::new();
        let mut mask = vec![f32::MIN; n * lmax * tmax];
        for (i, &s) in seqs.iter().enumerate() {
            let (start, len, past) = (plan.seq_start[s], plan.lens[s], plan.seq_past[s]);
            for j in 0..lmax {
                let m = &mut mask[(i * lmax + j) * tmax..(i * lmax + j + 1) * tmax];
                if j < len {
                    q_rows.push((start + j) as u32);
                    valid.push((i * lmax + j) as u32);
                    m[..=past + j].fill(0.0);
                } else {
                    q_rows.push(start as u32);
                    m[0] = 0.0;
                }
            }
        }
        let r = hi + 1 - lo;
        let offs: Vec<u32> = seqs.iter().map(|&s| (plan.slots[s] - lo) as u32).collect();
        let n_valid = valid.len();
        Ok(Some(Self {
            lo,
            r,
            offs: Tensor::from_vec(offs, n, dev)?,
            q_rows: Tensor::from_vec(q_rows, n * lmax, dev)?,
            valid: Tensor::from_vec(valid, n_valid, dev)?,
            mask: Tensor::from_vec(mask, (n, 1, 1, lmax, tmax), dev)?,
            seqs,
            lmax,
            tmax,
        }))
    }
}

/// Puts attention outputs back in packed row order. A piece with no row list is already the
/// whole `[N, ..]` result.
fn assemble_rows(
    mut pieces: Vec<(Vec<u32>, Tensor)>,
    n: usize,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    if pieces.len() == 1 {
        let rows = &pieces[0].0;
        if rows.is_empty() || rows.iter().enumerate().all(|(i, &r)| r == i as u32) {
            return Ok(pieces.remove(0).1);
        }
    }
    let mut inverse = vec![0u32; n];
    let mut at = 0u32;
    let mut parts = Vec::with_capacity(pieces.len());
    for (rows, t) in pieces {
        for r in rows {
            inverse[r as usize] = at;
            at += 1;
        }
        parts.push(t);
    }
    let cat = Tensor::cat(&parts, 0)?;
    cat.index_select(&Tensor::from_vec(inverse, n, dev)?, 0)
}

/// Device-side routing tensors built once per forward.
pub(crate) struct RowMasks {
    /// `[N, 1]` u8 mask of audio rows (None when the batch has no audio rows).
    pub audio: Option<Tensor>,
    text_idx: Option<Tensor>,
    audio_idx: Option<Tensor>,
}

impl RowMasks {
    pub fn new(plan: &Plan, dev: &Device) -> candle_core::Result<Self> {
        if plan.audio_rows.is_empty() {
            return Ok(Self {
                audio: None,
                text_idx: None,
                audio_idx: None,
            });
        }
        let n = plan.kinds.len();
        let m: Vec<u8> = plan.audio_flags.iter().map(|&f| f as u8).collect();
        Ok(Self {
            audio: Some(Tensor::from_vec(m, (n, 1), dev)?),
            text_idx: if plan.text_rows.is_empty() {
                None
            } else {
                Some(Tensor::from_vec(
                    plan.text_rows.clone(),
                    plan.text_rows.len(),
                    dev,
                )?)
            },
            audio_idx: Some(Tensor::from_vec(
                plan.audio_rows.clone(),
                plan.audio_rows.len(),
                dev,
            )?),
        })
    }

    pub fn text_idx(&self) -> candle_core::Result<&Tensor> {
        self.text_idx
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("no text rows".into()))
    }

    pub fn audio_idx(&self) -> candle_core::Result<&Tensor> {
        self.audio_idx
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("no audio rows".into()))
    }
}
