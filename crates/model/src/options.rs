//! Switches for the model's alternative code paths, fixed when the model is loaded. Each one
//! exists for A/B comparisons and debugging; [`Default`] is what production runs. The CLI fills
//! them from the `HIGGS_*` environment variables named on each field.

/// How the model computes, beyond its weights. `Default`: every fast path on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// MLP gate|up as one GEMM + the fused SwiGLU kernel on CUDA (`HIGGS_FUSED_SWIGLU`).
    pub fused_swiglu: bool,
    /// The K/V writes of all prefill pieces of a step as one launch per layer and tensor, instead
    /// of one copy per piece (`HIGGS_BATCHED_KV_WRITE`).
    pub batched_kv_write: bool,
    /// Prefill pieces of several sequences attended together, padded (`HIGGS_PREFILL_GROUP`).
    pub prefill_group: bool,
    /// CUDA graphs for the audio decode step of caches on CUDA (`HIGGS_CUDA_GRAPHS`).
    pub cuda_graphs: bool,
    /// Fused kernels (q|k|v + RoPE + K/V write, masked softmax) in the decode step on CUDA
    /// (`HIGGS_FUSED_DECODE`).
    pub fused_decode: bool,
    /// Within the fused decode step, each residual add and the RMSNorm after it as one kernel
    /// (`HIGGS_FUSED_ADD_NORM`).
    pub fused_add_norm: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            fused_swiglu: true,
            batched_kv_write: true,
            prefill_group: true,
            cuda_graphs: true,
            fused_decode: true,
            fused_add_norm: true,
        }
    }
}
