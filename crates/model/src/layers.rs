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
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // candle's fused kernel accumulates in f32 for every input dtype.
        candle_nn::ops::rms_norm(xs, &self.weight, self.eps)
    }
}

/// `LlamaMLP`: down(silu(gate(x)) * up(x)); weights in PyTorch `[out, in]` layout.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate: candle_nn::Linear,
    up: candle_nn::Linear,
    down: candle_nn::Linear,
}

impl Mlp {
    pub fn new(gate: Tensor, up: Tensor, down: Tensor) -> Self {
        Self {
            gate: candle_nn::Linear::new(gate, None),
            up: candle_nn::Linear::new(up, None),
            down: candle_nn::Linear::new(down, None),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(xs)?)?;
        self.down.forward(&(g * self.up.forward(xs)?)?)
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
mod tests {
    use super::*;

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
