//! Llama building blocks used by the Higgs backbone (HF `modeling_llama.py` 4.46 semantics):
//! RMSNorm, the SwiGLU MLP and llama3-scaled rotary embeddings.

use candle_core::{DType, Device, Module, Tensor};

use crate::config::{HiggsConfig, Llama3RopeScaling};

/// `LlamaRMSNorm`: x * rsqrt(mean(x^2) + eps) computed in f32, times the weight.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self {
            weight,
            eps: eps as f32,
        }
    }

    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn eps(&self) -> f32 {
        self.eps
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // candle's fused kernel accumulates in f32 for every input dtype.
        candle_nn::ops::rms_norm(xs, &self.weight, self.eps)
    }
}

/// `LlamaMLP`: down(silu(gate(x)) * up(x)); weights in PyTorch `[out, in]` layout.
///
/// Gate and up are stored as one `[2I, H]` matrix. On CUDA they run as ONE GEMM followed by a
/// fused SwiGLU kernel (`kernels/swiglu.cu`; `HIGGS_FUSED_SWIGLU=0` turns it off); elsewhere as
/// two GEMMs over the two halves, silu and a product, exactly as before.
#[derive(Debug, Clone)]
pub struct Mlp {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    gate_up: Tensor,
    gate: candle_nn::Linear,
    up: candle_nn::Linear,
    down: candle_nn::Linear,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    inter: usize,
}

impl Mlp {
    pub fn new(gate: Tensor, up: Tensor, down: Tensor) -> candle_core::Result<Self> {
        let inter = gate.dim(0)?;
        let gate_up = Tensor::cat(&[&gate, &up], 0)?;
        drop((gate, up));
        Ok(Self {
            gate: candle_nn::Linear::new(gate_up.narrow(0, 0, inter)?, None),
            up: candle_nn::Linear::new(gate_up.narrow(0, inter, inter)?, None),
            gate_up,
            down: candle_nn::Linear::new(down, None),
            inter,
        })
    }
}

impl Mlp {
    /// Two GEMMs over the halves, silu, product (every device).
    fn forward_generic(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(xs)?)?;
        self.down.forward(&(g * self.up.forward(xs)?)?)
    }

    /// One gate|up GEMM + the fused SwiGLU kernel (CUDA, `[rows, H]` input).
    #[cfg(feature = "cuda")]
    fn forward_fused(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gu = xs.matmul(&self.gate_up.t()?)?;
        let h = gu.apply_op1_no_bwd(&swiglu_cuda::FusedSwiglu { inter: self.inter })?;
        self.down.forward(&h)
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if xs.device().is_cuda() && xs.rank() == 2 && fused_swiglu() {
            return self.forward_fused(xs);
        }
        self.forward_generic(xs)
    }
}

#[cfg(feature = "cuda")]
fn fused_swiglu() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("HIGGS_FUSED_SWIGLU").map_or(true, |v| v != "0"))
}

/// Fused SwiGLU kernel (PTX compiled with nvcc 13.0 for compute_90) over the `[rows, 2I]` output
/// of the gate|up GEMM, f32 or bf16.
#[cfg(feature = "cuda")]
mod swiglu_cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorage, WrapErr};
    use candle_core::{CpuStorage, DType, Layout, Result, Shape};

    const PTX: &str = include_str!("kernels/swiglu.ptx");

    pub(super) struct FusedSwiglu {
        pub inter: usize,
    }

    impl candle_core::CustomOp1 for FusedSwiglu {
        fn name(&self) -> &'static str {
            "higgs-swiglu"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!("the fused SwiGLU kernel is CUDA-only")
        }

        fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
            let (rows, two_i) = l.shape().dims2()?;
            let inter = self.inter;
            if two_i != 2 * inter {
                candle_core::bail!("swiglu: {two_i} columns for intermediate size {inter}")
            }
            let Some((o0, o1)) = l.contiguous_offsets() else {
                candle_core::bail!("swiglu: input must be contiguous")
            };
            let n = rows * inter;
            let dev = s.device().clone();
            let cfg = LaunchConfig::for_num_elems(n as u32);
            let (inter32, n64) = (inter as u32, n as u64);
            match s.dtype() {
                DType::F32 => {
                    let src = s.as_cuda_slice::<f32>()?.slice(o0..o1);
                    let func = dev.get_or_load_custom_func("swiglu_f32", "higgs_swiglu", PTX)?;
                    // SAFETY: every element is written by the kernel.
                    let out = unsafe { dev.alloc::<f32>(n)? };
                    let mut b = func.builder();
                    b.arg(&src);
                    b.arg(&out);
                    b.arg(&inter32);
                    b.arg(&n64);
                    // SAFETY: argument types match `swiglu_f32`.
                    unsafe { b.launch(cfg) }.w()?;
                    Ok((CudaStorage::wrap_cuda_slice(out, dev), (rows, inter).into()))
                }
                DType::BF16 => {
                    let src = s.as_cuda_slice::<half::bf16>()?.slice(o0..o1);
                    let func = dev.get_or_load_custom_func("swiglu_bf16", "higgs_swiglu", PTX)?;
                    // SAFETY: every element is written by the kernel.
                    let out = unsafe { dev.alloc::<half::bf16>(n)? };
                    let mut b = func.builder();
                    b.arg(&src);
                    b.arg(&out);
                    b.arg(&inter32);
                    b.arg(&n64);
                    // SAFETY: argument types match `swiglu_bf16`.
                    unsafe { b.launch(cfg) }.w()?;
                    Ok((CudaStorage::wrap_cuda_slice(out, dev), (rows, inter).into()))
                }
                other => candle_core::bail!("swiglu: unsupported dtype {other:?}"),
            }
        }
    }
}

/// Rotary embedding frequencies, computed in f32 exactly as `_compute_llama3_parameters` does.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(cfg: &HiggsConfig, device: &Device) -> candle_core::Result<Self> {
        let inv = inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.as_ref());
        let n = inv.len();
        Ok(Self {
            inv_freq: Tensor::from_vec(inv, (1, n), device)?,
        })
    }

    /// cos and sin tables `[positions.len(), head_dim/2]` for arbitrary (per-token) positions,
    /// computed in f32 and cast to `dtype`.
    pub fn cos_sin(
        &self,
        positions: &Tensor,
        dtype: DType,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let n = positions.dim(0)?;
        let pos = positions.to_dtype(DType::F32)?.reshape((n, 1))?;
        let freqs = pos.broadcast_mul(&self.inv_freq)?;
        Ok((freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?))
    }
}

fn inv_freq(head_dim: usize, theta: f64, scaling: Option<&Llama3RopeScaling>) -> Vec<f32> {
    let base = theta as f32;
    let inv: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
        .collect();
    let Some(s) = scaling else { return inv };
    let factor = s.factor as f32;
    let low = s.low_freq_factor as f32;
    let high = s.high_freq_factor as f32;
    let old_ctx = s.original_max_position_embeddings as f32;
    let low_freq_wavelen = old_ctx / low;
    let high_freq_wavelen = old_ctx / high;
    inv.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            let llama = if wavelen > low_freq_wavelen {
                f / factor
            } else {
                f
            };
            let smooth = (old_ctx / wavelen - low) / (high - low);
            let smoothed = (1.0 - smooth) * llama / factor + smooth * llama;
            let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
            if medium {
                smoothed
            } else {
                llama
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should panic with its location
mod tests {
    use super::*;

    /// The fused SwiGLU path equals the generic one on the GPU, in f32 and bf16
    /// (`HIGGS_TEST_DEVICE=cuda`; a no-op on the CPU, where only the generic path exists).
    #[cfg(feature = "cuda")]
    #[test]
    fn fused_swiglu_matches_the_generic_mlp_on_cuda() {
        let dev = higgs_testkit::test_device();
        if !dev.is_cuda() {
            return;
        }
        let (h, i, rows) = (64usize, 96usize, 7usize);
        let r = |shape: (usize, usize), seed: f32| {
            let n = shape.0 * shape.1;
            let v: Vec<f32> = (0..n)
                .map(|k| (k as f32 * 0.7548 + seed).sin() * 0.5)
                .collect();
            Tensor::from_vec(v, shape, &dev)
        };
        for (dtype, tol) in [(DType::F32, 1e-5f32), (DType::BF16, 2e-2)] {
            let mlp = Mlp::new(
                r((i, h), 0.1).unwrap().to_dtype(dtype).unwrap(),
                r((i, h), 0.2).unwrap().to_dtype(dtype).unwrap(),
                r((h, i), 0.3).unwrap().to_dtype(dtype).unwrap(),
            )
            .unwrap();
            let x = r((rows, h), 0.4).unwrap().to_dtype(dtype).unwrap();
            let fused = mlp.forward_fused(&x).unwrap();
            let generic = mlp.forward_generic(&x).unwrap();
            let scale = generic
                .to_dtype(DType::F32)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let (d, _) = higgs_testkit::max_abs_diff(&fused, &generic);
            println!("{dtype:?}: fused vs generic SwiGLU MLP max |diff| {d:e} (max |out| {scale})");
            assert!(
                d <= tol * scale.max(1.0),
                "{dtype:?}: {d} > {tol} * {scale}"
            );
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_freqs_and_divides_low_ones() {
        let s = Llama3RopeScaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = inv_freq(128, 500000.0, None);
        let scaled = inv_freq(128, 500000.0, Some(&s));
        // wavelength of freq 0 is 2*pi < 2048: unchanged.
        assert_eq!(plain[0], scaled[0]);
        // the lowest frequency has wavelength far above 8192: divided by the factor.
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 32.0).abs() < 1e-12);
        // The transformers parameterisation (orig 1024, low 0.125, high 0.5) is identical (§1.3).
        let hf = Llama3RopeScaling {
            factor: 32.0,
            low_freq_factor: 0.125,
            high_freq_factor: 0.5,
            original_max_position_embeddings: 1024.0,
        };
        let scaled_hf = inv_freq(128, 500000.0, Some(&hf));
        for (a, b) in scaled.iter().zip(&scaled_hf) {
            assert!((a - b).abs() <= 1e-6 * a.abs(), "{a} vs {b}");
        }
    }
}
