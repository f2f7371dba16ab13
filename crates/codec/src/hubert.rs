//! HuBERT semantic teacher: transformers 4.46 `models/hubert/modeling_hubert.py` (`HubertModel` with
//! `feat_extract_norm="group"`, `do_stable_layer_norm=False`), as loaded from the
//! `semantic_model.*` tensors of the tokenizer checkpoint. Only the forward pass with
//! `output_hidden_states=True` in eval mode is implemented (no masking, no dropout).

use crate::checkpoint::Weights;
use crate::config::HubertConfig;
use crate::error::{CodecError, Result};
use crate::layers::{layer_norm, linear, mean_var, Conv1d, Conv1dConfig, Pad};
use candle_core::{Module, Tensor, D};

const P: &str = "semantic_model";

/// One feature-extractor conv (no bias); layer 0 also has a per-channel GroupNorm.
#[derive(Debug, Clone)]
struct FeatureConv {
    conv: Conv1d,
    /// GroupNorm(groups = channels) weight and bias, each `[1, C, 1]`.
    group_norm: Option<(Tensor, Tensor)>,
}

/// Post-LN transformer layer (`HubertEncoderLayer`).
#[derive(Debug, Clone)]
struct EncoderLayer {
    q_proj: candle_nn::Linear,
    k_proj: candle_nn::Linear,
    v_proj: candle_nn::Linear,
    out_proj: candle_nn::Linear,
    layer_norm: candle_nn::LayerNorm,
    intermediate_dense: candle_nn::Linear,
    output_dense: candle_nn::Linear,
    final_layer_norm: candle_nn::LayerNorm,
}

impl EncoderLayer {
    fn load(w: &Weights, prefix: &str, hidden: usize, eps: f64) -> Result<Self> {
        let h = Some(hidden);
        let a = |n: &str| format!("{prefix}.attention.{n}");
        let intermediate_dense = linear(
            w,
            &format!("{prefix}.feed_forward.intermediate_dense"),
            None,
            h,
        )?;
        let ffn = intermediate_dense.weight().dim(0)?;
        Ok(Self {
            q_proj: linear(w, &a("q_proj"), h, h)?,
            k_proj: linear(w, &a("k_proj"), h, h)?,
            v_proj: linear(w, &a("v_proj"), h, h)?,
            out_proj: linear(w, &a("out_proj"), h, h)?,
            layer_norm: layer_norm(w, &format!("{prefix}.layer_norm"), hidden, eps)?,
            intermediate_dense,
            output_dense: linear(
                w,
                &format!("{prefix}.feed_forward.output_dense"),
                h,
                Some(ffn),
            )?,
            final_layer_norm: layer_norm(w, &format!("{prefix}.final_layer_norm"), hidden, eps)?,
        })
    }

    fn forward(&self, x: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        let head_dim = hidden / heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        // HubertAttention: q scaled by head_dim^-0.5 before q.k; no mask (single unpadded input).
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = split((self.q_proj.forward(x)? * scale)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let attn = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let ctx = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, hidden))?;
        let x = self
            .layer_norm
            .forward(&(x + self.out_proj.forward(&ctx)?)?)?;
        let ff = self.intermediate_dense.forward(&x)?.gelu_erf()?;
        let ff = self.output_dense.forward(&ff)?;
        self.final_layer_norm.forward(&(x + ff)?)
    }
}

/// `HubertModel` (eval, `output_hidden_states=True`).
#[derive(Debug, Clone)]
pub struct Hubert {
    feature_convs: Vec<FeatureConv>,
    group_norm_eps: f64,
    fp_layer_norm: candle_nn::LayerNorm,
    fp_projection: candle_nn::Linear,
    pos_conv: Conv1d,
    pos_conv_kernel: usize,
    encoder_layer_norm: candle_nn::LayerNorm,
    layers: Vec<EncoderLayer>,
    heads: usize,
    hidden: usize,
}

impl Hubert {
    pub(crate) fn load(w: &Weights, cfg: &HubertConfig) -> Result<Self> {
        let fe = |i: usize| format!("{P}.feature_extractor.conv_layers.{i}");
        let n_conv = (0..)
            .take_while(|i| w.has_weight(&format!("{}.conv", fe(*i))))
            .count();
        if n_conv != cfg.conv_stride.len() {
            return Err(CodecError::Config {
                path: w.path().to_path_buf(),
                msg: format!(
                    "HuBERT has {n_conv} feature-extractor convs in the checkpoint but conv_stride {:?}",
                    cfg.conv_stride
                ),
            });
        }
        let mut feature_convs = Vec::with_capacity(n_conv);
        let mut ch = 1;
        for (i, stride) in cfg.conv_stride.iter().enumerate() {
            let conv = Conv1d::load(
                w,
                &format!("{}.conv", fe(i)),
                Conv1dConfig {
                    in_ch: Some(ch),
                    stride: *stride,
                    pad: Pad::Fixed(0),
                    bias: false,
                    ..Default::default()
                },
            )?;
            ch = conv.out_channels();
            // feat_extract_norm="group": only layer 0 is a HubertGroupNormConvLayer.
            let group_norm = if i == 0 {
                let gw = w.get(&format!("{}.layer_norm.weight", fe(i)), &[Some(ch)])?;
                let gb = w.get(&format!("{}.layer_norm.bias", fe(i)), &[Some(ch)])?;
                Some((gw.reshape((1, ch, 1))?, gb.reshape((1, ch, 1))?))
            } else {
                None
            };
            feature_convs.push(FeatureConv { conv, group_norm });
        }
        let eps = cfg.layer_norm_eps;
        let fp_layer_norm = layer_norm(w, &format!("{P}.feature_projection.layer_norm"), ch, eps)?;
        let fp_projection = linear(
            w,
            &format!("{P}.feature_projection.projection"),
            None,
            Some(ch),
        )?;
        let hidden = fp_projection.weight().dim(0)?;
        let groups = cfg.num_conv_pos_embedding_groups;
        if hidden % groups != 0 || hidden % cfg.num_attention_heads != 0 {
            return Err(CodecError::Config {
                path: w.path().to_path_buf(),
                msg: format!(
                    "HuBERT hidden size {hidden} not divisible by {groups} pos-conv groups / {} heads",
                    cfg.num_attention_heads
                ),
            });
        }
        let pos_prefix = format!("{P}.encoder.pos_conv_embed.conv");
        let pos_w = w.weight(&pos_prefix, &[Some(hidden), Some(hidden / groups), None])?;
        let pos_conv_kernel = pos_w.dim(2)?;
        let pos_conv = Conv1d::load(
            w,
            &pos_prefix,
            Conv1dConfig {
                out_ch: Some(hidden),
                in_ch: Some(hidden),
                kernel: Some(pos_conv_kernel),
                groups,
                pad: Pad::Fixed(pos_conv_kernel / 2),
                ..Default::default()
            },
        )?;
        let encoder_layer_norm = layer_norm(w, &format!("{P}.encoder.layer_norm"), hidden, eps)?;
        let lp = |i: usize| format!("{P}.encoder.layers.{i}");
        let n_layers = (0..)
            .take_while(|i| w.has(&format!("{}.attention.q_proj.weight", lp(*i))))
            .count();
        let layers = (0..n_layers)
            .map(|i| EncoderLayer::load(w, &lp(i), hidden, eps))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            feature_convs,
            // nn.GroupNorm default eps; HF does not pass layer_norm_eps to it.
            group_norm_eps: 1e-5,
            fp_layer_norm,
            fp_projection,
            pos_conv,
            pos_conv_kernel,
            encoder_layer_norm,
            layers,
            heads: cfg.num_attention_heads,
            hidden,
        })
    }

    /// Frames produced for `n` input samples (`None`/0 when too short).
    pub fn output_len(&self, n: usize) -> Option<usize> {
        self.feature_convs
            .iter()
            .try_fold(n, |l, fc| fc.conv.output_len(l))
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Raw waveform `[B, N]` → the `num_layers + 1` hidden states, each `[B, T, hidden]`.
    pub fn forward_hidden_states(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut h = x.unsqueeze(1)?;
        for fc in &self.feature_convs {
            h = fc.conv.forward(&h)?;
            if let Some((gw, gb)) = &fc.group_norm {
                let (mean, var) = mean_var(&h, D::Minus1)?;
                h = h
                    .broadcast_sub(&mean)?
                    .broadcast_div(&(var + self.group_norm_eps)?.sqrt()?)?
                    .broadcast_mul(gw)?
                    .broadcast_add(gb)?;
            }
            h = h.gelu_erf()?;
        }
        let h = h.transpose(1, 2)?.contiguous()?;
        let h = self
            .fp_projection
            .forward(&self.fp_layer_norm.forward(&h)?)?;
        // HubertPositionalConvEmbedding + HubertSamePadLayer (drop the last frame for even kernels).
        let pos = self.pos_conv.forward(&h.transpose(1, 2)?.contiguous()?)?;
        let pos = if self.pos_conv_kernel % 2 == 0 {
            let len = pos.dim(2)? - 1;
            pos.narrow(2, 0, len)?
        } else {
            pos
        };
        let pos = pos.gelu_erf()?.transpose(1, 2)?;
        let mut h = self.encoder_layer_norm.forward(&(h + pos)?.contiguous()?)?;
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(h.clone());
        for layer in &self.layers {
            h = layer.forward(&h, self.heads)?;
            states.push(h.clone());
        }
        Ok(states)
    }
}
