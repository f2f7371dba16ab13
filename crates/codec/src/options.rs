//! Switches for the codec's alternative code paths on CUDA, fixed when the codec is loaded (for
//! A/B runs). The CLI fills them from the `HIGGS_CODEC_*` variables named on each field.

use candle_core::DType;

/// How the codec computes on CUDA. `Default`: the fast paths (elsewhere there is one path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecOptions {
    /// candle's native transposed convolution on CUDA; off: the generic matmul + overlap-add
    /// formulation, as on the CPU (`HIGGS_CODEC_CONVT=generic`).
    pub native_conv_transpose: bool,
    /// The fused Snake kernel on CUDA; off: five elementwise ops (`HIGGS_CODEC_SNAKE=generic`).
    pub fused_snake: bool,
    /// Pointwise (kernel 1) convolutions as one batched matmul instead of candle's im2col conv1d
    /// (`HIGGS_CODEC_POINTWISE=matmul`, the default; `generic`: conv1d), on every device. On since
    /// GPU suite run 7 (H100: no regression, +4 % at c=256 in a same-binary A/B, same audio).
    pub direct_pointwise: bool,
    /// Stride-1 convolutions (the residual units' dilated k7 and pointwise convs, the
    /// decoder's first and last conv) on CUDA as the column kernel + one batched GEMM
    /// ([`higgs_kernels::conv_cols`]: coalesced columns written straight in the GEMM's layout,
    /// the preceding Snake computed inside it, the bias folded into the GEMM) instead of
    /// candle's im2col conv1d / the pointwise matmul (`HIGGS_CODEC_CONV=fused|generic`). Off
    /// until a GPU suite run turns it on.
    pub fused_conv: bool,
    /// dtype of the acoustic decoder's weights and activations (`HIGGS_CODEC_DTYPE=bf16|f32`).
    /// The reference decodes in f32; bf16 halves the decoder's memory traffic (its cost is
    /// mostly im2col copies, not arithmetic) at a measured accuracy (docs/BENCHMARKS.md). The
    /// quantizer, `fc_post2` and the whole encoder stay f32; audio leaves the decoder as f32.
    pub decoder_dtype: DType,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            native_conv_transpose: true,
            fused_snake: true,
            direct_pointwise: true,
            fused_conv: false,
            decoder_dtype: DType::F32,
        }
    }
}
