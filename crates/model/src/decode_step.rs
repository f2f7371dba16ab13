//! The audio decode step with fixed shapes (what `decode_graph` captures and replays): one audio
//! position per slot of `0..rows`, keys `0..keys` attended, the same layers as the eager forward.
//! On CUDA it uses the fused kernels of `higgs_kernels` unless [`crate::ModelOptions`] turn them
//! off: q|k|v as one GEMM, RoPE + the K/V cache write in one kernel, scale + length mask +
//! softmax in one kernel, each residual add with the RMSNorm after it in one kernel.

use candle_core::{DType, Tensor};

use crate::attention::{Attention, KeyMask};
use crate::decoder_layer::{Routing, StepAttention};
use crate::error::ForwardError;
use crate::kv_cache::KvCache;
use crate::layers::RmsNorm;
use crate::HiggsAudioModel;

/// The attention of the fixed-shape step: row `r` is slot `r`.
pub(crate) struct FixedStep {
    cos: Tensor,
    sin: Tensor,
    rows: usize,
    keys: usize,
    /// `[rows]` u32 write position per slot (`u32::MAX` = none).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    write_pos: Tensor,
    /// `[rows * kv_heads, 1, head_dim]` u32: `write_pos` per slot and KV head (for the scatter).
    write_idx: Tensor,
    /// `[rows]` u32 attended length per slot.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    lens: Tensor,
    /// `[rows, 1, 1, 1, keys]` f32 additive mask: keys at or past a slot's length get f32::MIN.
    mask: Tensor,
    /// The fused kernels (CUDA only).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fused: bool,
    /// Residual add + RMSNorm as one kernel (within `fused`).
    add_norm: bool,
}

impl FixedStep {
    /// Writes the rotated K/V of the rows `h` into layer `li`'s cache; with the fused kernels
    /// also returns the rotated queries.
    fn write(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        cache: &KvCache,
    ) -> candle_core::Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if self.fused {
            let (kc, vc) = (&cache.k[li], &cache.v[li]);
            let q = attn.queries_writing_kv(h, &self.cos, &self.sin, &self.write_pos, kc, vc)?;
            return Ok(Some(q));
        }
        let (k, v) = attn.keys_values(h, &self.cos, &self.sin)?;
        cache.write_slot_range(li, &k, &v, 0, self.rows, &self.write_idx)?;
        Ok(None)
    }
}

impl StepAttention for FixedStep {
    fn attend(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        _fast_forward: bool,
        cache: &KvCache,
    ) -> Result<Tensor, ForwardError> {
        let (kc, vc) = (&cache.k[li], &cache.v[li]);
        let (q, mask) = match self.write(li, attn, h, cache)? {
            #[cfg(feature = "cuda")]
            Some(q) => (q, KeyMask::Lengths(&self.lens)),
            _ => (
                attn.queries(h, &self.cos, &self.sin)?,
                KeyMask::Additive(&self.mask),
            ),
        };
        let o = attn.attend_slot_range(&q, kc, vc, 0, self.rows, self.keys, mask)?;
        Ok(attn.output(&o)?)
    }

    fn write_kv(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        cache: &KvCache,
    ) -> Result<(), ForwardError> {
        self.write(li, attn, h, cache)?;
        Ok(())
    }

    fn add_norm(
        &self,
        x: &Tensor,
        y: &Tensor,
        norm: &RmsNorm,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        #[cfg(feature = "cuda")]
        if self.add_norm {
            return higgs_kernels::add_rmsnorm(x, y, norm.weight(), norm.eps());
        }
        let r = (x + y)?;
        let normed = candle_core::Module::forward(norm, &r)?;
        Ok((r, normed))
    }

    fn fuses_add_norm(&self) -> bool {
        self.add_norm
    }
}

impl HiggsAudioModel {
    /// The whole audio decode step for slots `0..rows`, from ONE packed u32 device buffer and
    /// with fixed shapes, so that it can be captured as a CUDA graph and replayed (see
    /// `decode_graph`). `input` = `[codes (rows * codebooks, codebook offsets added) | positions
    /// (rows) | write positions (rows, u32::MAX = no write) | attended lengths (rows)]`; keys
    /// `0..keys` are read (`keys` >= every length, the rest masked). Every slot's one position is
    /// an audio position; returns the audio logits of all `rows` slots. It must stay free of
    /// host uploads and syncs (graph capture forbids them): host data comes only through
    /// `input`, and `key_pos` (`[>= keys]` f32 0, 1, 2, ..) is a persistent tensor.
    pub(crate) fn decode_step_body(
        &self,
        input: &Tensor,
        rows: usize,
        keys: usize,
        key_pos: &Tensor,
        cache: &KvCache,
    ) -> Result<Tensor, ForwardError> {
        let cfg = self.config();
        let (nkv, hd, nc) = (cfg.num_key_value_heads, cfg.head_dim, cfg.num_codebooks);
        let codes = input.narrow(0, 0, rows * nc)?;
        let positions = input.narrow(0, rows * nc, rows)?;
        let write_pos = input.narrow(0, rows * nc + rows, rows)?;
        let lens = input.narrow(0, rows * nc + 2 * rows, rows)?;
        let lens_f32 = lens.to_dtype(DType::F32)?.reshape((rows, 1, 1, 1, 1))?;
        let x = self.embed_audio(&codes, rows)?;
        let write_idx = write_pos
            .reshape((rows, 1, 1))?
            .broadcast_as((rows, nkv, hd))?
            .contiguous()?
            .reshape((rows * nkv, 1, hd))?;
        let mask = key_pos
            .narrow(0, 0, keys)?
            .reshape((1, 1, 1, 1, keys))?
            .broadcast_ge(&lens_f32)?
            .to_dtype(DType::F32)?
            .affine(f32::MIN as f64, 0.0)?;
        #[cfg(feature = "cuda")]
        let fused = self.device().is_cuda() && self.options().fused_decode;
        #[cfg(not(feature = "cuda"))]
        let fused = false;
        let (cos, sin) = self.rope_tables(&positions)?;
        let step = FixedStep {
            cos,
            sin,
            rows,
            keys,
            write_pos,
            write_idx,
            lens,
            mask,
            fused,
            add_norm: fused && self.options().fused_add_norm,
        };
        let (x, normed) = self.run_layers(x, Routing::AllAudio, &step, cache, None)?;
        let normed = match normed {
            Some(h) => h,
            None => self.final_norm(&x)?,
        };
        Ok(self.audio_head(&normed)?)
    }
}
