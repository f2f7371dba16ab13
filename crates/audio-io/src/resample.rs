//! Sample-rate conversion that reproduces `librosa.resample(y, orig_sr, target_sr)` with its
//! default `res_type="soxr_hq"`.
//!
//! librosa calls python-soxr, which drives libsoxr with the `SOXR_HQ` (20-bit) quality recipe,
//! float32 interleaved I/O and no flags, feeds the input in chunks and flushes; librosa then pads
//! or trims the result to `ceil(n * (target_sr / orig_sr))` samples (`librosa.util.fix_length`).
//! We call the same libsoxr (compiled from the source vendored in `soxr-sys`) with the same recipe
//! and apply the same length rule, including its float rounding (44100 samples at 44.1 kHz → 24 kHz
//! give 24001 samples, because `44100 * (24000 / 44100)` is a hair above 24000 in f64).

use crate::error::{AudioError, Result};

/// Highest rate we accept on either side; a guard against nonsense headers, not a codec limit.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Output length of [`resample`], exactly as librosa computes it:
/// `int(np.ceil(n * (float(target_sr) / orig_sr)))`.
pub fn resampled_len(n_samples: usize, from_rate: u32, to_rate: u32) -> usize {
    if from_rate == to_rate || from_rate == 0 {
        return n_samples;
    }
    let ratio = f64::from(to_rate) / f64::from(from_rate);
    // The f64 product is what numpy computes; `as` saturates instead of wrapping.
    (n_samples as f64 * ratio).ceil() as usize
}

fn check_rate(rate: u32) -> Result<()> {
    if rate == 0 {
        return Err(AudioError::InvalidSampleRate {
            rate,
            why: "a sample rate must be positive",
        });
    }
    if rate > MAX_SAMPLE_RATE {
        return Err(AudioError::InvalidSampleRate {
            rate,
            why: "above the supported maximum of 768000 Hz",
        });
    }
    Ok(())
}

/// Resamples mono `input` from `from_rate` to `to_rate` with libsoxr HQ, returning
/// [`resampled_len`] samples. Equal rates return the input unchanged (as librosa does).
pub fn resample(input: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>> {
    check_rate(from_rate)?;
    check_rate(to_rate)?;
    if from_rate == to_rate {
        return Ok(input.to_vec());
    }
    let target_len = resampled_len(input.len(), from_rate, to_rate);
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = soxr_hq(input, f64::from(from_rate), f64::from(to_rate)).map_err(|detail| {
        AudioError::Resample {
            from: from_rate,
            to: to_rate,
            detail,
        }
    })?;
    // librosa.util.fix_length: zero-pad or trim to the computed length.
    out.resize(target_len, 0.0);
    Ok(out)
}

/// Owns a libsoxr handle so it is freed on every path.
struct Soxr(soxr_sys::soxr_t);

impl Drop for Soxr {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful soxr_create and is deleted exactly once.
        unsafe { soxr_sys::soxr_delete(self.0) }
    }
}

fn soxr_err(err: soxr_sys::soxr_error_t) -> Option<String> {
    if err.is_null() {
        return None;
    }
    // SAFETY: libsoxr error values are static NUL-terminated strings.
    let msg = unsafe { std::ffi::CStr::from_ptr(err) };
    Some(msg.to_string_lossy().into_owned())
}

/// The python-soxr `csoxr_divide_proc` sequence: create, process in chunks of
/// `48000 * in / out` input samples, flush with a null input.
fn soxr_hq(input: &[f32], in_rate: f64, out_rate: f64) -> Result<Vec<f32>, String> {
    let mut err: soxr_sys::soxr_error_t = std::ptr::null();
    // SAFETY: plain constructors of POD spec structs.
    let io_spec = unsafe {
        soxr_sys::soxr_io_spec(
            soxr_sys::soxr_datatype_t_SOXR_FLOAT32_I,
            soxr_sys::soxr_datatype_t_SOXR_FLOAT32_I,
        )
    };
    // SAFETY: as above. SOXR_HQ is a C macro for SOXR_20_BITQ (not exported by the bindings).
    let q_spec = unsafe {
        soxr_sys::soxr_quality_spec(std::os::raw::c_ulong::from(soxr_sys::SOXR_20_BITQ), 0)
    };
    // SAFETY: pointers to live locals; a null runtime spec selects the defaults, as python-soxr does.
    let handle = unsafe {
        soxr_sys::soxr_create(
            in_rate,
            out_rate,
            1,
            &mut err,
            &io_spec,
            &q_spec,
            std::ptr::null(),
        )
    };
    if let Some(msg) = soxr_err(err) {
        if !handle.is_null() {
            // SAFETY: non-null handle from soxr_create, not used afterwards.
            unsafe { soxr_sys::soxr_delete(handle) };
        }
        return Err(msg);
    }
    if handle.is_null() {
        return Err("soxr_create returned no resampler".to_owned());
    }
    let soxr = Soxr(handle);

    // Same buffer and chunk sizes as python-soxr (C double arithmetic, truncated to size_t):
    // libsoxr's output for a given input does not depend on them, but staying identical removes
    // any doubt about the tail length.
    let olen = (input.len() as f64 * out_rate / in_rate + 1.0) as usize;
    let chunk_len = ((48000.0 * in_rate / out_rate) as usize).max(1);
    let mut out = vec![0f32; olen];
    let mut out_pos = 0usize;

    for chunk in input.chunks(chunk_len) {
        let mut odone = 0usize;
        // SAFETY: input/output pointers and lengths describe live, correctly sized slices; a null
        // `idone` makes libsoxr take the whole chunk (buffering what does not fit in `out`).
        let e = unsafe {
            soxr_sys::soxr_process(
                soxr.0,
                chunk.as_ptr().cast(),
                chunk.len(),
                std::ptr::null_mut(),
                out[out_pos..].as_mut_ptr().cast(),
                olen - out_pos,
                &mut odone,
            )
        };
        if let Some(msg) = soxr_err(e) {
            return Err(msg);
        }
        out_pos += odone;
    }
    // Flush: a null input signals end of stream.
    let mut odone = 0usize;
    // SAFETY: null input is libsoxr's documented flush; the output slice is live.
    let e = unsafe {
        soxr_sys::soxr_process(
            soxr.0,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            out[out_pos..].as_mut_ptr().cast(),
            olen - out_pos,
            &mut odone,
        )
    };
    if let Some(msg) = soxr_err(e) {
        return Err(msg);
    }
    out_pos += odone;
    out.truncate(out_pos);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rule_matches_librosa_float_rounding() {
        // numpy: int(np.ceil(44100 * (24000 / 44100))) == 24001
        assert_eq!(resampled_len(44100, 44100, 24000), 24001);
        assert_eq!(resampled_len(16000, 16000, 24000), 24000);
        assert_eq!(resampled_len(0, 16000, 24000), 0);
        assert_eq!(resampled_len(7, 24000, 24000), 7);
    }

    #[test]
    fn rejects_zero_and_absurd_rates() {
        assert!(resample(&[0.0; 10], 0, 24000).is_err());
        assert!(resample(&[0.0; 10], 24000, 0).is_err());
        assert!(resample(&[0.0; 10], 10_000_000, 24000).is_err());
    }
}
