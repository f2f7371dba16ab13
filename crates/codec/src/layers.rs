//! Shared building blocks: `dac/nn/layers.py` (`Snake1d`, `WNConv1d`, `WNConvTranspose1d`) and the
//! plain `nn.Conv1d` / `nn.Linear` / `nn.LayerNorm` used by HuBERT and the semantic encoder.
//! Weight norm is already folded by [`crate::checkpoint::Weights::weight`].

use crate::checkpoint::Weights;
use crate::error::{CodecError, Result};
use candle_core::{Module, Tensor, D};

/// 1-D convolution over `[B, C, T]` (torch `nn.Conv1d` semantics).
#[derive(Debug, Clone)]
pub(crate) struct Conv1d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
}

/// How a conv's padding is chosen once its kernel size is known from the weight.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pad {
    /// `(k - 1) / 2 * dilation`: length-preserving for odd kernels (DAC, semantic encoder).
    Same,
    Fixed(usize),
}

impl Conv1d {
    /// Loads `prefix.weight` (any weight-norm spelling) of shape `[out?, in?/groups, k?]` and, if
    /// `bias`, `prefix.bias` `[out]`.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        w: &Weights,
        prefix: &str,
        out_ch: Option<usize>,
        in_ch: Option<usize>,
        kernel: Option<usize>,
        stride: usize,
        dilation: usize,
        groups: usize,
        pad: Pad,
        bias: bool,
    ) -> Result<Self> {
        let weight = w.weight(prefix, &[out_ch, in_ch.map(|c| c / groups), kernel])?;
        let (out, _, k) = weight.dims3()?;
        let bias = if bias {
            Some(w.get(&format!("{prefix}.bias"), &[Some(out)])?)
        } else if w.has(&format!("{prefix}.bias")) {
            // Tolerate an unexpected bias rather than silently dropping it.
            Some(w.get(&format!("{prefix}.bias"), &[Some(out)])?)
        } else {
            None
        };
        let padding = match pad {
            Pad::Same => (k - 1) / 2 * dilation,
            Pad::Fixed(p) => p,
        };
        Ok(Self {
            weight,
            bias,
            padding,
            stride,
            dilation,
            groups,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1] * self.groups
    }

    pub fn kernel_size(&self) -> usize {
        self.weight.dims()[2]
    }

    /// Output length for an input of `l` samples; `None` when the input is too short.
    pub fn output_len(&self, l: usize) -> Option<usize> {
        let span = self.dilation * (self.kernel_size() - 1) + 1;
        Some((l + 2 * self.padding).checked_sub(span)? / self.stride + 1)
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv1d(
            &self.weight,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

/// `nn.ConvTranspose1d` with `padding` / `output_padding`, computed as an unpadded transposed
/// conv followed by a crop: candle's fast (col2im) path, on CPU and CUDA, needs both to be 0.
#[derive(Debug, Clone)]
pub(crate) struct ConvTranspose1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
    output_padding: usize,
}

impl ConvTranspose1d {
    /// Weight `[in, out, k]` (weight norm per input channel), bias `[out]`.
    pub fn load(
        w: &Weights,
        prefix: &str,
        in_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> Result<Self> {
        let weight = w.weight(prefix, &[Some(in_ch), None, Some(kernel)])?;
        let (_, out, _) = weight.dims3()?;
        let bias = w.get(&format!("{prefix}.bias"), &[Some(out)])?;
        if output_padding > padding {
            return Err(CodecError::Input(format!(
                "{prefix}: output_padding {output_padding} > padding {padding} cannot be cropped"
            )));
        }
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
            output_padding,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    /// How far (in output samples) an output sample can be from the `stride * i` position of an
    /// input sample `i` that feeds it: taps `t = j + p - i*s` lie in `[0, k)`.
    pub fn reach(&self) -> usize {
        let k = self.weight.dims()[2];
        self.padding.max(k - 1 - self.padding)
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_b, _c, l_in) = x.dims3()?;
        let k = self.weight.dim(2)?;
        let full = x.conv_transpose1d(&self.weight, 0, 0, self.stride, 1, 1)?;
        // torch length: (L-1)*s - 2p + k + output_padding, starting at offset p of the full result.
        let out_len =
            ((l_in - 1) * self.stride + k + self.output_padding).saturating_sub(2 * self.padding);
        full.narrow(2, self.padding, out_len)?
            .broadcast_add(&self.bias.reshape((1, (), 1))?)
    }
}

/// `Snake1d`: `x + 1 / (alpha + 1e-9) * sin(alpha * x)^2`, per channel.
#[derive(Debug, Clone)]
pub(crate) struct Snake1d {
    alpha: Tensor,
    inv_alpha: Tensor,
}

impl Snake1d {
    pub fn load(w: &Weights, prefix: &str, channels: usize) -> Result<Self> {
        let alpha = w.get(
            &format!("{prefix}.alpha"),
            &[Some(1), Some(channels), Some(1)],
        )?;
        let inv_alpha = (&alpha + 1e-9)?.recip()?;
        Ok(Self { alpha, inv_alpha })
    }
}

impl Module for Snake1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let s = x.broadcast_mul(&self.alpha)?.sin()?.sqr()?;
        x + s.broadcast_mul(&self.inv_alpha)?
    }
}

/// `nn.Linear` with a bias, weight `[out, in]`.
pub(crate) fn linear(
    w: &Weights,
    prefix: &str,
    out_f: Option<usize>,
    in_f: Option<usize>,
) -> Result<candle_nn::Linear> {
    let weight = w.get(&format!("{prefix}.weight"), &[out_f, in_f])?;
    let out = weight.dim(0)?;
    let bias = w.get(&format!("{prefix}.bias"), &[Some(out)])?;
    Ok(candle_nn::Linear::new(weight, Some(bias)))
}

/// `nn.LayerNorm(dim, eps)` over the last axis.
pub(crate) fn layer_norm(
    w: &Weights,
    prefix: &str,
    dim: usize,
    eps: f64,
) -> Result<candle_nn::LayerNorm> {
    let weight = w.get(&format!("{prefix}.weight"), &[Some(dim)])?;
    let bias = w.get(&format!("{prefix}.bias"), &[Some(dim)])?;
    Ok(candle_nn::LayerNorm::new(weight, bias, eps))
}

/// Applies a channels-last module (Linear) to a channels-first `[B, C, T]` tensor.
pub(crate) fn channels_last<M: Module>(m: &M, x: &Tensor) -> candle_core::Result<Tensor> {
    m.forward(&x.transpose(1, 2)?)?.transpose(1, 2)
}

/// Mean over `dim` with the biased variance, as torch's norms compute it.
pub(crate) fn mean_var(x: &Tensor, dim: D) -> candle_core::Result<(Tensor, Tensor)> {
    let mean = x.mean_keepdim(dim)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(dim)?;
    Ok((mean, var))
}
