//! Shared building blocks: `dac/nn/layers.py` (`Snake1d`, `WNConv1d`, `WNConvTranspose1d`) and the
//! plain `nn.Conv1d` / `nn.Linear` / `nn.LayerNorm` used by HuBERT and the semantic encoder.
//! Weight norm is already folded by [`crate::checkpoint::Weights::weight`].

use crate::checkpoint::Weights;
use crate::error::{CodecError, Result};
use crate::options::CodecOptions;
use candle_core::{DType, Module, Tensor, D};

/// 1-D convolution over `[B, C, T]` (torch `nn.Conv1d` semantics).
#[derive(Debug, Clone)]
pub(crate) struct Conv1d {
    weight: Tensor,
    /// `[out, in]` when the conv is pointwise (k 1, stride 1, no padding, one group) and
    /// [`CodecOptions::direct_pointwise`] is on: one batched matmul, no im2col copy in and no
    /// transposing copy out (candle's conv1d does both).
    pointwise: Option<Tensor>,
    /// `[out, rows]` when the conv has stride 1 and one group and
    /// [`CodecOptions::fused_conv`] is on: the weight flattened to `[out, in * k]`, then the bias
    /// as one column, then zero columns up to `rows` (a multiple of 8). On CUDA the forward is
    /// then the column kernel ([`higgs_kernels::conv_cols`], with the preceding Snake computed
    /// inside it where there is one) and one batched GEMM that also adds the bias.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    cols: Option<Tensor>,
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

/// How a [`Conv1d`] is loaded (candle's `Conv1dConfig`, plus the shape checked against the
/// weight). `Default`: stride, dilation and groups 1, "same" padding, with a bias, any shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv1dConfig {
    /// Expected output channels, input channels (all groups) and kernel size; `None`: any.
    pub out_ch: Option<usize>,
    pub in_ch: Option<usize>,
    pub kernel: Option<usize>,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
    pub pad: Pad,
    /// A `prefix.bias` is expected (an unexpected one is still loaded).
    pub bias: bool,
}

impl Default for Conv1dConfig {
    fn default() -> Self {
        Self {
            out_ch: None,
            in_ch: None,
            kernel: None,
            stride: 1,
            dilation: 1,
            groups: 1,
            pad: Pad::Same,
            bias: true,
        }
    }
}

impl Conv1d {
    /// Loads `prefix.weight` (any weight-norm spelling) of shape `[out, in / groups, kernel]`
    /// and `prefix.bias` `[out]`.
    pub fn load(w: &Weights, prefix: &str, c: Conv1dConfig) -> Result<Self> {
        let Conv1dConfig {
            stride,
            dilation,
            groups,
            ..
        } = c;
        let weight = w.weight(prefix, &[c.out_ch, c.in_ch.map(|ch| ch / groups), c.kernel])?;
        let (out, _, k) = weight.dims3()?;
        let bias = if c.bias {
            Some(w.get(&format!("{prefix}.bias"), &[Some(out)])?)
        } else if w.has(&format!("{prefix}.bias")) {
            // Tolerate an unexpected bias rather than silently dropping it.
            Some(w.get(&format!("{prefix}.bias"), &[Some(out)])?)
        } else {
            None
        };
        let padding = match c.pad {
            Pad::Same => (k - 1) / 2 * dilation,
            Pad::Fixed(p) => p,
        };
        Ok(Self {
            weight,
            pointwise: None,
            cols: None,
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

    /// Input channels (all groups).
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1] * self.groups
    }

    /// With `direct` on and a pointwise conv, forward as one batched matmul
    /// ([`CodecOptions::direct_pointwise`]); otherwise unchanged.
    pub fn with_direct_pointwise(mut self, direct: bool) -> Result<Self> {
        let pointwise =
            self.kernel_size() == 1 && self.stride == 1 && self.padding == 0 && self.groups == 1;
        if direct && pointwise {
            self.pointwise = Some(self.weight.squeeze(2)?.contiguous()?);
        }
        Ok(self)
    }

    /// With `fused` on and a stride-1, one-group conv, forward on CUDA through the column
    /// kernel and one GEMM ([`CodecOptions::fused_conv`]; for a pointwise conv the "columns" are
    /// the input itself with the preceding Snake applied and the ones row appended: a fused
    /// conv takes precedence over [`Self::with_direct_pointwise`]); otherwise unchanged.
    pub fn with_fused(mut self, fused: bool) -> Result<Self> {
        let (out, inp, k) = self.weight.dims3()?;
        if !fused || self.stride != 1 || self.groups != 1 {
            return Ok(self);
        }
        let taps = inp * k;
        let mut parts = vec![self.weight.reshape((out, taps))?];
        let mut filled = taps;
        if let Some(b) = &self.bias {
            parts.push(b.reshape((out, 1))?);
            filled += 1;
        }
        // Rows rounded up to a multiple of 8 keep the GEMM's leading dimension 16-byte
        // aligned for f32 and bf16 (cuBLAS's tensor-core kernels want that).
        let rows = filled.next_multiple_of(8);
        if rows > filled {
            parts.push(Tensor::zeros(
                (out, rows - filled),
                self.weight.dtype(),
                self.weight.device(),
            )?);
        }
        self.cols = Some(Tensor::cat(&parts, 1)?.contiguous()?);
        Ok(self)
    }

    /// The column path applies to `x` (loaded with it, on CUDA, f32 or bf16).
    #[cfg(feature = "cuda")]
    fn takes_cols(&self, x: &Tensor) -> bool {
        self.cols.is_some() && x.device().is_cuda() && matches!(x.dtype(), DType::F32 | DType::BF16)
    }

    /// Whether [`Self::forward_snake`] computes `snake` inside this conv's column kernel (no
    /// pass of its own) for `x`; profilers mark the Snake before the conv then.
    pub fn fuses_snake(&self, snake: &Snake1d, x: &Tensor) -> bool {
        #[cfg(feature = "cuda")]
        if self.takes_cols(x) && snake.fused_alphas(x).is_some() {
            return true;
        }
        let _ = (snake, x);
        false
    }

    /// `self(snake(x))`: one column kernel + GEMM when [`Self::fuses_snake`], else Snake then
    /// the conv.
    pub fn forward_snake(&self, snake: &Snake1d, x: &Tensor) -> candle_core::Result<Tensor> {
        self.conv(x, Some(snake), self.padding)
    }

    /// Zeros each side of the input in [`Module::forward`]: `(k - 1) / 2 * dilation` for the
    /// "same" convs of the decoder, which is also how far an output reaches to either side.
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// `self(snake(x))` (Snake optional) with `padding` zeros each side instead of the conv's
    /// own: `0` for a streaming step whose input already carries the neighbours
    /// ([`crate::streaming`]). The one code path of every forward.
    pub fn conv(
        &self,
        x: &Tensor,
        snake: Option<&Snake1d>,
        padding: usize,
    ) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.takes_cols(x) {
            match snake.map(|s| s.fused_alphas(x)) {
                None => return self.forward_cols(x, None, padding),
                Some(Some(alphas)) => return self.forward_cols(x, Some(alphas), padding),
                Some(None) => return self.forward_cols(&snake_or(snake, x)?, None, padding),
            }
        }
        let x = snake_or(snake, x)?;
        let y = match &self.pointwise {
            // [out, in] x [B, in, T] -> [B, out, T]: the weight broadcast over the batch
            // (stride 0, one strided-batched GEMM).
            Some(w) => w.broadcast_matmul(&x.contiguous()?)?,
            None => x.conv1d(
                &self.weight,
                padding,
                self.stride,
                self.dilation,
                self.groups,
            )?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }

    /// The column kernel (with Snake's alphas, if given) and one GEMM with the bias column.
    #[cfg(feature = "cuda")]
    fn forward_cols(
        &self,
        x: &Tensor,
        snake: Option<(&Tensor, &Tensor)>,
        padding: usize,
    ) -> candle_core::Result<Tensor> {
        let Some(w) = &self.cols else {
            candle_core::bail!("conv: the column path was not loaded")
        };
        let spec = higgs_kernels::ConvCols {
            kernel: self.kernel_size(),
            dilation: self.dilation,
            padding,
            rows: w.dims()[1],
            bias_row: self.bias.is_some(),
        };
        let cols = higgs_kernels::conv_cols(&x.contiguous()?, snake, spec)?;
        // [out, rows] x [B, rows, L] -> [B, out, L]: the weight broadcast over the batch
        // (stride 0, one strided-batched GEMM), bias included.
        w.broadcast_matmul(&cols)
    }

    /// The same convolution with weights (and so activations) in `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: self.weight.to_dtype(dtype)?,
            cols: self.cols.as_ref().map(|c| c.to_dtype(dtype)).transpose()?,
            pointwise: self
                .pointwise
                .as_ref()
                .map(|p| p.to_dtype(dtype))
                .transpose()?,
            bias: self.bias.as_ref().map(|b| b.to_dtype(dtype)).transpose()?,
            ..self.clone()
        })
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
        self.conv(x, None, self.padding)
    }
}

/// `snake(x)`, or `x` without one.
fn snake_or(snake: Option<&Snake1d>, x: &Tensor) -> candle_core::Result<Tensor> {
    match snake {
        Some(s) => s.forward(x),
        None => Ok(x.clone()),
    }
}

/// `nn.ConvTranspose1d` with `padding` / `output_padding`, computed as one matmul plus an
/// overlap-add of `ceil(k / stride)` shifted blocks, then a crop.
///
/// Why not `Tensor::conv_transpose1d` everywhere: candle 0.11.1's CPU fast path (col2im) returns
/// wrong values for every batch row but the first (batch > 1), which batched streaming decode
/// needs. This formulation is batch-safe and uses only generic ops (matmul, reshape, pad).
/// On CUDA the native kernel (one matmul + one col2im kernel, taken with padding 0; the crop
/// and bias follow) is used instead: it is batch-correct there (checked by the codec tests
/// with `HIGGS_TEST_DEVICE=cuda`) and launches ~10 fewer kernels per layer.
/// [`CodecOptions::native_conv_transpose`] off forces the generic path on every device.
#[derive(Debug, Clone)]
pub(crate) struct ConvTranspose1d {
    /// Weight `[in, out, k]` (contiguous), for the native CUDA kernel.
    weight: Tensor,
    /// The native kernel on CUDA.
    native: bool,
    /// Weight `[in, out, k]`, taps zero-padded to `blocks * stride` and flattened to
    /// `[in, out * blocks * stride]`.
    weight_mat: Tensor,
    bias: Tensor,
    out_channels: usize,
    kernel: usize,
    blocks: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
}

impl ConvTranspose1d {
    /// Weight `[in, out, k]` (weight norm per input channel), bias `[out]`.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        w: &Weights,
        prefix: &str,
        in_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
        opts: &CodecOptions,
    ) -> Result<Self> {
        let weight = w.weight(prefix, &[Some(in_ch), None, Some(kernel)])?;
        let (_, out, _) = weight.dims3()?;
        let bias = w.get(&format!("{prefix}.bias"), &[Some(out)])?;
        if output_padding > padding || stride == 0 {
            return Err(CodecError::Input(format!(
                "{prefix}: output_padding {output_padding} > padding {padding} (or stride 0) cannot be cropped"
            )));
        }
        let blocks = kernel.div_ceil(stride);
        let weight = weight.contiguous()?;
        let weight_mat = weight
            .pad_with_zeros(2, 0, blocks * stride - kernel)?
            .reshape((in_ch, out * blocks * stride))?;
        Ok(Self {
            weight,
            native: opts.native_conv_transpose,
            weight_mat,
            bias,
            out_channels: out,
            kernel,
            blocks,
            stride,
            padding,
            output_padding,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The same transposed convolution in `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: self.weight.to_dtype(dtype)?,
            weight_mat: self.weight_mat.to_dtype(dtype)?,
            bias: self.bias.to_dtype(dtype)?,
            ..self.clone()
        })
    }

    /// How far (in output samples) an output sample can be from the `stride * i` position of an
    /// input sample `i` that feeds it: taps `t = j + p - i*s` lie in `[0, k)`.
    pub fn reach(&self) -> usize {
        self.padding.max(self.kernel - 1 - self.padding)
    }
}

impl ConvTranspose1d {
    /// The transposed convolution without padding, crop or bias: `(L - 1) * s + k` samples,
    /// output `q` at `q - padding` of the torch layer's.
    fn full(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c_in, l_in) = x.dims3()?;
        if self.native && x.device().is_cuda() {
            return x
                .contiguous()?
                .conv_transpose1d(&self.weight, 0, 0, self.stride, 1, 1);
        }
        let (s, m, c_out) = (self.stride, self.blocks, self.out_channels);
        // col[b, i, o, j, r] = sum_c x[b, c, i] * w[c, o, j*s + r]: input i, tap j*s + r.
        let xt = x.transpose(1, 2)?.contiguous()?.reshape((b * l_in, c_in))?;
        let col = xt
            .matmul(&self.weight_mat)?
            .reshape((b, l_in, c_out, m, s))?;
        // Tap j*s + r of input i lands on output (i + j)*s + r: block j is shifted by j*s.
        let mut full: Option<Tensor> = None;
        for j in 0..m {
            let part = col
                .narrow(3, j, 1)?
                .squeeze(3)?
                .permute((0, 2, 1, 3))?
                .contiguous()?
                .reshape((b, c_out, l_in * s))?
                .pad_with_zeros(2, j * s, (m - 1 - j) * s)?;
            full = Some(match full {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        let full = full.ok_or_else(|| candle_core::Error::Msg("empty transposed conv".into()))?;
        // The generic formulation pads every input to m*s taps; torch's full length is shorter
        // by m*s - k.
        full.narrow(2, 0, (l_in - 1) * s + self.kernel)
    }

    /// Input samples a streaming step keeps from the previous one: output `j` is fed by inputs
    /// `i` with `0 <= j + p - i*s < k`, so the outputs of new inputs `b..b+n` that no later input
    /// touches, `b*s - p .. (b+n)*s - p`, also need inputs `b - (ceil(k/s) - 1) .. b`.
    pub fn history(&self) -> usize {
        self.blocks - 1
    }

    /// Output `j` of input `i` lands `i*s - padding` samples in: how far a streaming step's
    /// outputs lag its inputs, in output samples.
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// One streaming step: `x` = the [`Self::history`] previous inputs followed by `n` new ones
    /// → the `n * s` outputs that are final now (see [`Self::history`]), bias added.
    pub fn step(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, l) = x.dims3()?;
        let n = l
            .checked_sub(self.history())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "transposed conv step of {l} samples has no new input"
                ))
            })?;
        self.full(x)?
            .narrow(2, self.history() * self.stride, n * self.stride)?
            .broadcast_add(&self.bias.reshape((1, (), 1))?)
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, l_in) = x.dims3()?;
        // torch length: (L-1)*s - 2p + k + output_padding, starting at offset p of the full result.
        let out_len = ((l_in - 1) * self.stride + self.kernel + self.output_padding)
            .saturating_sub(2 * self.padding);
        self.full(x)?
            .narrow(2, self.padding, out_len)?
            .broadcast_add(&self.bias.reshape((1, (), 1))?)
    }
}

/// `Snake1d`: `x + 1 / (alpha + 1e-9) * sin(alpha * x)^2`, per channel.
#[derive(Debug, Clone)]
pub(crate) struct Snake1d {
    /// `[1, C, 1]` in the activations' dtype (the generic path).
    alpha: Tensor,
    inv_alpha: Tensor,
    /// `[C]` in f32 for the fused kernel, which computes in f32 for f32 and bf16 activations.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    alpha_f32: Tensor,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    inv_alpha_f32: Tensor,
    /// The fused kernel on CUDA (f32 and bf16).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fused: bool,
}

impl Snake1d {
    pub fn load(w: &Weights, prefix: &str, channels: usize, opts: &CodecOptions) -> Result<Self> {
        let alpha = w.get(
            &format!("{prefix}.alpha"),
            &[Some(1), Some(channels), Some(1)],
        )?;
        let inv_alpha = (&alpha + 1e-9)?.recip()?;
        Ok(Self {
            alpha_f32: alpha.flatten_all()?.contiguous()?,
            inv_alpha_f32: inv_alpha.flatten_all()?.contiguous()?,
            alpha,
            inv_alpha,
            fused: opts.fused_snake,
        })
    }

    /// The f32 `[C]` alpha and 1/alpha of the fused kernel, when it runs for `x`.
    #[cfg(feature = "cuda")]
    fn fused_alphas(&self, x: &Tensor) -> Option<(&Tensor, &Tensor)> {
        (self.fused && x.device().is_cuda() && matches!(x.dtype(), DType::F32 | DType::BF16))
            .then_some((&self.alpha_f32, &self.inv_alpha_f32))
    }

    /// The same activation for `dtype` inputs (the fused kernel keeps its f32 alphas).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            alpha: self.alpha.to_dtype(dtype)?,
            inv_alpha: self.inv_alpha.to_dtype(dtype)?,
            ..self.clone()
        })
    }
}

impl Module for Snake1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some((alpha, inv_alpha)) = self.fused_alphas(x) {
            return higgs_kernels::snake(&x.contiguous()?, alpha, inv_alpha);
        }
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

/// Mean over `dim` with the biased variance, as torch's norms compute it.
pub(crate) fn mean_var(x: &Tensor, dim: D) -> candle_core::Result<(Tensor, Tensor)> {
    let mean = x.mean_keepdim(dim)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(dim)?;
    Ok((mean, var))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    fn conv(cin: usize, cout: usize, k: usize, dilation: usize, bias: bool) -> Conv1d {
        let dev = Device::Cpu;
        Conv1d {
            weight: Tensor::randn(0f32, 1.0, (cout, cin, k), &dev).unwrap(),
            pointwise: None,
            cols: None,
            bias: bias.then(|| Tensor::randn(0f32, 1.0, cout, &dev).unwrap()),
            padding: (k - 1) / 2 * dilation,
            stride: 1,
            dilation,
            groups: 1,
        }
    }

    #[test]
    fn fused_weight_times_the_kernels_columns_is_the_convolution() {
        // What `conv_cols.cu` writes, built here with candle ops in the same row order
        // (channel-major taps, the ones row, zero rows), times `with_fused`'s weight must be
        // conv1d: this pins the layout contract between the weight and the CUDA kernel.
        let dev = Device::Cpu;
        for (cin, cout, k, dilation, bias) in [
            (3, 5, 7, 3, true),
            (4, 1, 7, 1, true),
            (2, 3, 3, 2, false),
            (8, 4, 7, 9, true),
            (6, 6, 1, 1, true),
        ] {
            let c = conv(cin, cout, k, dilation, bias).with_fused(true).unwrap();
            let w = c.cols.as_ref().unwrap();
            let rows = w.dims()[1];
            assert_eq!(rows % 8, 0);
            assert!(rows >= cin * k + usize::from(bias));
            let (b, t) = (2, 40);
            let x = Tensor::randn(0f32, 1.0, (b, cin, t), &dev).unwrap();
            let expected = c.forward(&x).unwrap(); // conv1d on the CPU
            let l = c.output_len(t).unwrap();
            let xp = x.pad_with_zeros(2, c.padding, c.padding).unwrap();
            let mut parts = Vec::new();
            for ch in 0..cin {
                for tap in 0..k {
                    parts.push(
                        xp.narrow(1, ch, 1)
                            .unwrap()
                            .narrow(2, tap * dilation, l)
                            .unwrap(),
                    );
                }
            }
            if bias {
                parts.push(Tensor::ones((b, 1, l), DType::F32, &dev).unwrap());
            }
            while parts.len() < rows {
                parts.push(Tensor::zeros((b, 1, l), DType::F32, &dev).unwrap());
            }
            let cols = Tensor::cat(&parts, 1).unwrap();
            let got = w.broadcast_matmul(&cols).unwrap();
            assert_eq!(got.dims(), expected.dims());
            let d: f32 = (got - &expected)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-4, "cin {cin} k {k} d {dilation}: max |diff| {d}");
        }
    }

    #[test]
    fn only_stride_one_single_group_convs_take_the_column_path() {
        let fused = |k: usize, on: bool| conv(2, 2, k, 1, true).with_fused(on).unwrap();
        assert!(fused(7, false).cols.is_none());
        assert!(fused(1, false).cols.is_none());
        assert!(fused(7, true).cols.is_some());
        // Pointwise too (its columns are the Snake'd input plus the ones row).
        assert!(fused(1, true).cols.is_some());
        let mut strided = conv(2, 2, 4, 1, true);
        strided.stride = 2;
        assert!(strided.with_fused(true).unwrap().cols.is_none());
        let mut grouped = conv(2, 2, 7, 1, true);
        grouped.groups = 2;
        assert!(grouped.with_fused(true).unwrap().cols.is_none());
    }
}
