//! Shared self-attention (reference §3.3): GQA with llama3 RoPE over a slot-based KV cache.
//!
//! [`attend`] is the one place the attention maths is written; the ways of gathering queries and
//! keys around it (one position per slot of a range, padded prefill pieces, one sequence) are the
//! `attend_*` methods of [`Attention`].

use candle_core::{DType, Module, Tensor, D};

use crate::batch::PrefillGroup;
use crate::config::HiggsConfig;
use crate::error::LoadError;
use crate::weights::Loader;

/// Which keys a query must not see.
pub(crate) enum KeyMask<'a> {
    /// Every key is visible.
    None,
    /// Added to the f32 scores viewed `[.., kv_heads, n_rep, len, keys]` (broadcast).
    Additive(&'a Tensor),
    /// Keys at or past `lens[r]` (u32 `[rows]`) of each leading row are hidden; scale, mask and
    /// softmax run as one kernel (`higgs_kernels::decode_softmax`).
    #[cfg(feature = "cuda")]
    Lengths(&'a Tensor),
}

/// Softmax attention of grouped query heads: `q` `[.., kv_heads, n_rep * len, hd]` (query head
/// `g * n_rep + r` in group `g`), `k`, `v` `[.., kv_heads, keys, hd]`. Scores are scaled by
/// `1/sqrt(hd)` in the compute dtype, masked and soft-maxed in f32, and the probabilities cast
/// back before the product with `v`. Returns `[.., kv_heads, n_rep * len, hd]`.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    n_rep: usize,
    mask: KeyMask,
) -> candle_core::Result<Tensor> {
    let dims = q.dims().to_vec();
    let rank = dims.len();
    let (m, hd) = (dims[rank - 2], dims[rank - 1]);
    let keys = k.dim(D::Minus2)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let probs = match mask {
        #[cfg(feature = "cuda")]
        KeyMask::Lengths(lens) => {
            higgs_kernels::decode_softmax(&q.matmul(&k.t()?)?, lens, scale as f32)?
        }
        mask => {
            let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
            let scores = match mask {
                KeyMask::Additive(m_add) => {
                    let mut grouped = dims[..rank - 2].to_vec();
                    grouped.extend([n_rep, m / n_rep, keys]);
                    scores.reshape(grouped)?.broadcast_add(m_add)?
                }
                _ => scores,
            };
            let mut flat = dims;
            flat[rank - 1] = keys;
            candle_nn::ops::softmax_last_dim(&scores)?
                .to_dtype(q.dtype())?
                .reshape(flat)?
        }
    };
    probs.matmul(v)
}

/// `self_attn`: q, k, v and o projections of one layer.
pub(crate) struct Attention {
    /// q, k and v weights as one `[(heads + 2 kv_heads) head_dim, hidden]` matrix (one GEMM in the
    /// fused decode step); `q`, `k`, `v` are row views of it.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    qkv: candle_nn::Linear,
    q: candle_nn::Linear,
    k: candle_nn::Linear,
    v: candle_nn::Linear,
    o: candle_nn::Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn load(ld: &Loader, cfg: &HiggsConfig) -> Result<Self, LoadError> {
        let h = cfg.hidden_size;
        let q_dim = cfg.num_attention_heads * cfg.head_dim;
        let kv = cfg.kv_dim();
        let fuse_err = |e| ld.err("q_proj/k_proj/v_proj.weight", e);
        let qkv = Tensor::cat(
            &[
                ld.get("q_proj.weight", &[q_dim, h])?,
                ld.get("k_proj.weight", &[kv, h])?,
                ld.get("v_proj.weight", &[kv, h])?,
            ],
            0,
        )
        .map_err(fuse_err)?;
        let rows = |start: usize, len: usize| -> Result<candle_nn::Linear, LoadError> {
            Ok(candle_nn::Linear::new(
                qkv.narrow(0, start, len).map_err(fuse_err)?,
                None,
            ))
        };
        Ok(Self {
            q: rows(0, q_dim)?,
            k: rows(q_dim, kv)?,
            v: rows(q_dim + kv, kv)?,
            qkv: candle_nn::Linear::new(qkv.clone(), None),
            o: candle_nn::Linear::new(ld.get("o_proj.weight", &[h, q_dim])?, None),
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    fn n_rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Rotated queries `[N, heads * hd]` of the rows `h` (row layout, no transposes).
    pub fn queries(&self, h: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (n, _) = h.dims2()?;
        let (nh, hd) = (self.heads, self.head_dim);
        let q = self.q.forward(h)?.reshape((1, n, nh, hd))?;
        candle_nn::rotary_emb::rope_thd(&q, cos, sin)?.reshape((n, nh * hd))
    }

    /// Rotated keys and values `[N, kv_heads * hd]` of the rows `h`.
    pub fn keys_values(
        &self,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (n, _) = h.dims2()?;
        let (nkv, hd) = (self.kv_heads, self.head_dim);
        let k = self.k.forward(h)?.reshape((1, n, nkv, hd))?;
        let k = candle_nn::rotary_emb::rope_thd(&k, cos, sin)?.reshape((n, nkv * hd))?;
        Ok((k, self.v.forward(h)?))
    }

    /// Rotated queries of the rows `h` (row `r` = slot `r`), their rotated keys and values
    /// written into the caches at `write_pos[r]` (u32, `u32::MAX` = none) by one q|k|v GEMM and
    /// one kernel.
    #[cfg(feature = "cuda")]
    pub fn queries_writing_kv(
        &self,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        write_pos: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
    ) -> candle_core::Result<Tensor> {
        higgs_kernels::decode_qkv(
            &self.qkv.forward(h)?,
            cos,
            sin,
            write_pos,
            k_cache,
            v_cache,
            self.heads,
            self.kv_heads,
            self.head_dim,
        )
    }

    /// The output projection of attention outputs `[N, heads * hd]`.
    pub fn output(&self, o: &Tensor) -> candle_core::Result<Tensor> {
        self.o.forward(o)
    }

    /// One query position per slot of `lo..lo + r` (`q`: `[R, heads * hd]`, rotated) attending
    /// over keys `0..keys` of its slot in ONE batched matmul: each KV block is read once for its
    /// `n_rep` query heads, no KV copy. `mask` hides keys past each slot's length (additive:
    /// `[R, 1, 1, 1, keys]`). Returns `[R, heads * hd]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_slot_range(
        &self,
        q: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        lo: usize,
        r: usize,
        keys: usize,
        mask: KeyMask,
    ) -> candle_core::Result<Tensor> {
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let qr = q.reshape((r, nkv, nh / nkv, hd))?;
        let kc = k_cache.narrow(0, lo, r)?.narrow(2, 0, keys)?;
        let vc = v_cache.narrow(0, lo, r)?.narrow(2, 0, keys)?;
        attend(&qr, &kc, &vc, self.n_rep(), mask)?.reshape((r, nh * hd))
    }

    /// Prefill pieces of several sequences in ONE padded attention: queries `[S, kv_heads, n_rep ·
    /// Lmax, hd]` against each piece's slot keys `0..Tmax` (gathered once per layer), causal mask
    /// per piece (padding queries see key 0 only and are dropped). Returns the rows of the pieces
    /// in group order, `[sum len, heads · hd]`.
    pub fn attend_prefill_group(
        &self,
        q: &Tensor,
        g: &PrefillGroup,
        k_cache: &Tensor,
        v_cache: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (nh, nkv, hd, n_rep) = (self.heads, self.kv_heads, self.head_dim, self.n_rep());
        let (s, l, t) = (g.seqs.len(), g.lmax, g.tmax);
        // index_select needs a contiguous source: copy the slot range's first T keys, then pick.
        let gather = |c: &Tensor| -> candle_core::Result<Tensor> {
            c.narrow(0, g.lo, g.r)?
                .narrow(2, 0, t)?
                .contiguous()?
                .index_select(&g.offs, 0) // [S, nkv, T, hd]
        };
        let (kc, vc) = (gather(k_cache)?, gather(v_cache)?);
        let qg = q
            .index_select(&g.q_rows, 0)? // [S*L, nh*hd]
            .reshape((s, l, nkv, n_rep, hd))?
            .permute((0, 2, 3, 1, 4))?
            .contiguous()?
            .reshape((s, nkv, n_rep * l, hd))?;
        attend(&qg, &kc, &vc, n_rep, KeyMask::Additive(&g.mask))? // [S, nkv, n_rep*L, hd]
            .reshape((s, nkv, n_rep, l, hd))?
            .permute((0, 3, 1, 2, 4))?
            .contiguous()?
            .reshape((s * l, nh * hd))?
            .index_select(&g.valid, 0)
    }

    /// The `len` new queries of one sequence (packed rows `start..start + len`) against the
    /// `past + len` keys of its slot; GQA without copying K/V. `mask`: `[len, past + len]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_piece(
        &self,
        q: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        (start, len, past, slot): (usize, usize, usize, usize),
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (nh, nkv, hd, n_rep) = (self.heads, self.kv_heads, self.head_dim, self.n_rep());
        let total = past + len;
        let slot_keys = |c: &Tensor| c.narrow(0, slot, 1)?.narrow(2, 0, total)?.squeeze(0); // [nkv, T, hd]
        let (ks, vs) = (slot_keys(k_cache)?, slot_keys(v_cache)?);
        // Query head g*n_rep + r uses KV head g.
        let qs = q
            .narrow(0, start, len)?
            .reshape((len, nh, hd))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((nkv, n_rep * len, hd))?;
        let mask = mask.map_or(KeyMask::None, KeyMask::Additive);
        attend(&qs, &ks, &vs, n_rep, mask)? // [nkv, n_rep*len, hd]
            .reshape((nh, len, hd))?
            .transpose(0, 1)?
            .reshape((len, nh * hd))
    }
}
