//! The DualFFN decoder layer (reference §3.2–3.4): shared attention, then per position either the
//! text FFN or the audio FFN (with their own norms); a fast-forward layer (no audio FFN) passes
//! audio positions through unchanged and hides audio keys from text queries.

use candle_core::{Module, Tensor};

use crate::attention::Attention;
use crate::batch::RowMasks;
use crate::config::HiggsConfig;
use crate::error::{ForwardError, LoadError};
use crate::kv_cache::KvCache;
use crate::layers::{Mlp, RmsNorm};
use crate::weights::Loader;

/// The attention side of one step as a layer sees it: the eager packed batch
/// ([`crate::batch::PackedStep`]) or the fixed-shape decode step
/// ([`crate::decode_step::FixedStep`]).
pub(crate) trait StepAttention {
    /// Writes the K/V of the rows of `h` (normed layer input) into layer `li`'s cache and returns
    /// the projected attention output `[N, hidden]`. `fast_forward`: a fast-forward layer (text
    /// queries must not see audio keys).
    fn attend(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        fast_forward: bool,
        cache: &KvCache,
    ) -> Result<Tensor, ForwardError>;

    /// Only the K/V writes of [`Self::attend`] (a fast-forward layer over audio rows only).
    fn write_kv(
        &self,
        li: usize,
        attn: &Attention,
        h: &Tensor,
        cache: &KvCache,
    ) -> Result<(), ForwardError>;

    /// `(x + y, norm(x + y))`.
    fn add_norm(
        &self,
        x: &Tensor,
        y: &Tensor,
        norm: &RmsNorm,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let r = (x + y)?;
        let normed = norm.forward(&r)?;
        Ok((r, normed))
    }

    /// Whether [`Self::add_norm`] is one fused kernel: then each layer also produces the next
    /// layer's normed input with its residual add.
    fn fuses_add_norm(&self) -> bool {
        false
    }
}

/// Which FFN the packed rows take.
#[derive(Clone, Copy)]
pub(crate) enum Routing<'a> {
    /// Every row is an audio position (the decode hot path): no routing tensors.
    AllAudio,
    /// Text rows (and maybe audio rows), routed by the masks.
    Mixed(&'a RowMasks),
}

/// The audio FFN of a DualFFN layer, with its own norms.
pub(crate) struct AudioBranch {
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

pub(crate) struct DecoderLayer {
    attn: Attention,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    /// `None` for a fast-forward layer.
    audio: Option<AudioBranch>,
}

impl DecoderLayer {
    /// Layer `layers.{l}` (`ld` at that prefix); `dual`: it has the audio FFN.
    pub fn load(
        ld: &Loader,
        cfg: &HiggsConfig,
        dual: bool,
        fused_swiglu: bool,
    ) -> Result<Self, LoadError> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.rms_norm_eps);
        let attn = Attention::load(&ld.pp("self_attn"), cfg)?;
        let audio = if dual {
            Some(AudioBranch {
                input_layernorm: RmsNorm::load(ld, "audio_input_layernorm.weight", h, eps)?,
                post_attention_layernorm: RmsNorm::load(
                    ld,
                    "audio_post_attention_layernorm.weight",
                    h,
                    eps,
                )?,
                mlp: Mlp::load(&ld.pp("audio_mlp"), h, i, fused_swiglu)?,
            })
        } else {
            None
        };
        Ok(Self {
            attn,
            input_layernorm: RmsNorm::load(ld, "input_layernorm.weight", h, eps)?,
            post_attention_layernorm: RmsNorm::load(ld, "post_attention_layernorm.weight", h, eps)?,
            mlp: Mlp::load(&ld.pp("mlp"), h, i, fused_swiglu)?,
            audio,
        })
    }

    /// The norm applied to the layer's input at audio positions.
    pub fn audio_input_norm(&self) -> &RmsNorm {
        match &self.audio {
            Some(b) => &b.input_layernorm,
            None => &self.input_layernorm,
        }
    }

    /// One layer over the packed rows `x`. `normed`: [`Self::audio_input_norm`] of `x`, when the
    /// previous layer produced it (fused add + norm, all-audio rows only). `next_norm`: the norm
    /// after this layer at audio positions (the next layer's input norm, or the final norm).
    /// Returns the layer output and, when `step` fuses add + norm, `next_norm` of it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        li: usize,
        x: &Tensor,
        normed: Option<Tensor>,
        routing: Routing,
        step: &dyn StepAttention,
        cache: &KvCache,
        next_norm: &RmsNorm,
    ) -> Result<(Tensor, Option<Tensor>), ForwardError> {
        let masks = match routing {
            Routing::AllAudio => {
                let h = match normed {
                    Some(h) => h,
                    None => self.audio_input_norm().forward(x)?,
                };
                let Some(a) = &self.audio else {
                    // Fast-forward: audio positions only store their K/V and leave unchanged.
                    step.write_kv(li, &self.attn, &h, cache)?;
                    return Ok((x.clone(), None));
                };
                // The audio norms and FFN only; no routing, no text weights touched.
                let attn = step.attend(li, &self.attn, &h, false, cache)?;
                let (r, h2) = step.add_norm(x, &attn, &a.post_attention_layernorm)?;
                let d = a.mlp.forward(&h2)?;
                if step.fuses_add_norm() {
                    let (x, next) = step.add_norm(&r, &d, next_norm)?;
                    return Ok((x, Some(next)));
                }
                return Ok(((r + d)?, None));
            }
            Routing::Mixed(masks) => masks,
        };
        let h_norm = match (&self.audio, &masks.audio) {
            (Some(a), Some(m)) => select_rows(
                m,
                &a.input_layernorm.forward(x)?,
                &self.input_layernorm.forward(x)?,
            )?,
            _ => self.input_layernorm.forward(x)?,
        };
        let fast_forward = self.audio.is_none();
        let attn = step.attend(li, &self.attn, &h_norm, fast_forward, cache)?;
        let r = (x + attn)?;
        let out = match &self.audio {
            Some(a) if masks.audio.is_some() => {
                // Each FFN on its own rows only (there are text rows: the batch is mixed).
                let mut out = r.clone();
                let t = masks.text_idx()?;
                let tr = r.index_select(t, 0)?;
                let d = self
                    .mlp
                    .forward(&self.post_attention_layernorm.forward(&tr)?)?;
                out = out.index_add(t, &d, 0)?;
                let ai = masks.audio_idx()?;
                let ar = r.index_select(ai, 0)?;
                let d = a.mlp.forward(&a.post_attention_layernorm.forward(&ar)?)?;
                out.index_add(ai, &d, 0)?
            }
            _ => {
                let full = (&r
                    + self
                        .mlp
                        .forward(&self.post_attention_layernorm.forward(&r)?)?)?;
                match (&masks.audio, fast_forward) {
                    // Fast-forward layer: audio positions leave with their input unchanged.
                    (Some(m), true) => select_rows(m, x, &full)?,
                    _ => full,
                }
            }
        };
        Ok((out, None))
    }
}

/// Row-wise select: `mask[i] ? on_true[i] : on_false[i]` for a `[N, 1]` mask.
fn select_rows(mask: &Tensor, on_true: &Tensor, on_false: &Tensor) -> candle_core::Result<Tensor> {
    mask.broadcast_as(on_true.shape())?
        .where_cond(on_true, on_false)
}
