//! Band-limited resampling identical to `torchaudio.functional.resample` (torchaudio 2.5,
//! `functional/functional.py`: `_get_sinc_resample_kernel`, `_apply_sinc_resample_kernel`) with its
//! defaults: `sinc_interp_hann`, `lowpass_filter_width` 6, `rolloff` 0.99. The reference uses it for
//! the 24 kHz → 16 kHz input of the semantic branch (`get_regress_target`).

use crate::error::{CodecError, Result};
use candle_core::{Device, Tensor};

const LOWPASS_FILTER_WIDTH: f32 = 6.0;
const ROLLOFF: f64 = 0.99;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The `new` polyphase kernels (`[new][2 * width + orig]`, row-major) and `width`, for rates
/// already reduced by their gcd. Computed in float32 in the same order as torchaudio, which builds
/// the kernel in the waveform's dtype.
pub(crate) fn sinc_resample_kernel(orig: usize, new: usize) -> (Vec<f32>, usize) {
    // Python-side scalars are doubles; tensor arithmetic is float32 (scalars cast to float).
    let base_f64 = orig.min(new) as f64 * ROLLOFF;
    let width = (f64::from(LOWPASS_FILTER_WIDTH) * orig as f64 / base_f64).ceil() as usize;
    let base_freq = base_f64 as f32;
    let scale = (base_f64 / orig as f64) as f32;
    let taps = 2 * width + orig;
    let mut kernels = Vec::with_capacity(new * taps);
    for phase in 0..new {
        let shift = -(phase as f32) / new as f32;
        for j in 0..taps {
            let idx = (j as f32 - width as f32) / orig as f32;
            let mut t = (shift + idx) * base_freq;
            t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH);
            let window = (t * std::f32::consts::PI / LOWPASS_FILTER_WIDTH / 2.0)
                .cos()
                .powi(2);
            let tp = t * std::f32::consts::PI;
            let sinc = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
            kernels.push(sinc * (window * scale));
        }
    }
    (kernels, width)
}

/// Resamples each row of `x` (`[B, N]`, f32) from `orig_rate` to `new_rate` → `[B, ceil(N*new/orig)]`.
pub fn resample(x: &Tensor, orig_rate: usize, new_rate: usize) -> Result<Tensor> {
    if orig_rate == 0 || new_rate == 0 {
        return Err(CodecError::Input("sample rates must be positive".into()));
    }
    if orig_rate == new_rate {
        return Ok(x.clone());
    }
    let g = gcd(orig_rate, new_rate);
    let (orig, new) = (orig_rate / g, new_rate / g);
    let (b, n) = x.dims2()?;
    let (kernel, width) = sinc_resample_kernel(orig, new);
    let taps = 2 * width + orig;
    let kernel = Tensor::from_vec(kernel, (new, 1, taps), &Device::Cpu)?.to_device(x.device())?;
    let padded = x.pad_with_zeros(1, width, width + orig)?.unsqueeze(1)?;
    // [B, new, frames] → interleave phases → [B, new * frames].
    let y = padded.conv1d(&kernel, 0, orig, 1, 1)?;
    let y = y.transpose(1, 2)?.contiguous()?.reshape((b, ()))?;
    let target = (new * n).div_ceil(orig);
    Ok(y.narrow(1, 0, target.min(y.dim(1)?))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_the_reference_description_for_24k_to_16k() {
        // §5.2: orig 3, new 2, width 10, 23 taps; phase 0 centre tap is sinc(0)*1*(1.98/3).
        let (k, width) = sinc_resample_kernel(3, 2);
        assert_eq!(width, 10);
        assert_eq!(k.len(), 2 * 23);
        assert!((k[10] - 1.98 / 3.0).abs() < 1e-6);
    }
}
