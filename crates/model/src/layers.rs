//! Llama building blocks used by the Higgs backbone (HF `modeling_llama.py` 4.46 semantics):
//! RMSNorm, the SwiGLU MLP and llama3-scaled rotary embeddings.

use candle_core::{DType, Device, Module, Tensor};

use crate::config::{HiggsConfig, Llama3RopeScaling};
use crate::error::LoadError;
use crate::weights::Loader;

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

    /// Weight `name` of `dim` elements.
    pub(crate) fn load(ld: &Loader, name: &str, dim: usize, eps: f64) -> Result<Self, LoadError> {
        Ok(Self::new(ld.get(name, &[dim])?, eps))
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
/// fused SwiGLU kernel (unless `fused` is off, [`crate::ModelOptions::fused_swiglu`]); elsewhere
/// as two GEMMs over the two halves, silu and a product.
#[derive(Debug, Clone)]
pub struct Mlp {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    gate_up: Tensor,
    gate: candle_nn::Linear,
    up: candle_nn::Linear,
    down: candle_nn::Linear,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    inter: usize,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fused: bool,
}

impl Mlp {
    /// With the fused SwiGLU kernel where it applies.
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
            fused: true,
        })
    }

    /// `gate_proj`, `up_proj` and `down_proj` of a hidden-`h`, intermediate-`i` MLP.
    pub(crate) fn load(ld: &Loader, h: usize, i: usize, fused: bool) -> Result<Self, LoadError> {
        let mlp = Self::new(
            ld.get("gate_proj.weight", &[i, h])?,
            ld.get("up_proj.weight", &[i, h])?,
            ld.get("down_proj.weight", &[h, i])?,
        )
        .map_err(|e| ld.err("gate_proj.weight + up_proj.weight", e))?;
        Ok(Self { fused, ..mlp })
    }

    /// Two GEMMs over the halves, silu, product (every device).
    fn forward_generic(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(xs)?)?;
        self.down.forward(&(g * self.up.forward(xs)?)?)
    }

    /// One gate|up GEMM + the fused SwiGLU kernel (CUDA, `[rows, H]` input).
    #[cfg(feature = "cuda")]
    fn forward_fused(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gu = xs.matmul(&self.gate_up.t()?)?;
        self.down.forward(&higgs_kernels::swiglu(&gu, self.inter)?)
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.fused && xs.device().is_cuda() && xs.rank() == 2 {
            return self.forward_fused(xs);
        }
        self.forward_generic(xs)
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
