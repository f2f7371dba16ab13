//! Reference audio of one request, checked before any of it is decoded: the number of parts and
//! each part's size are checked while the request is validated; [`PendingAudio::decode`] (run on a
//! bounded blocking pool by the service) then reads every container header first and refuses the
//! request when the declared lengths exceed the per-request budget, and only then decodes, each
//! part within what is left of the budget, so the decoded samples of a request are bounded even
//! when a header declares no length or lies.

use crate::{ApiError, ErrorKind, Limits};

/// Encoded reference clips of one request, in the order the request refers to them.
#[derive(Debug, Clone, Default)]
pub struct PendingAudio {
    clips: Vec<(String, Vec<u8>)>,
}

impl PendingAudio {
    /// Adds the encoded bytes of `field`; refuses a part beyond `max_reference_clips` or larger
    /// than `max_reference_bytes` (nothing is decoded here). Returns the clip's index.
    pub fn push(
        &mut self,
        field: &str,
        bytes: Vec<u8>,
        limits: &Limits,
    ) -> Result<usize, ApiError> {
        check_count(self.clips.len() + 1, limits)?;
        if bytes.len() as u64 > limits.max_reference_bytes {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "`{field}`: the audio is {} bytes; the limit per clip is {} bytes (send a shorter or compressed clip)",
                    bytes.len(),
                    limits.max_reference_bytes
                ),
            ));
        }
        self.clips.push((field.to_string(), bytes));
        Ok(self.clips.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// Decodes every clip to mono samples at `rate` (blocking: run it off the async runtime).
    /// Headers are read and checked first (per clip: rate, channels, declared length; together:
    /// `max_reference_total_seconds`); then each clip is decoded with a duration limit of what is
    /// left of the per-request budget.
    pub fn decode(self, rate: u32, limits: &Limits) -> Result<Vec<Vec<f32>>, ApiError> {
        let per_clip = decode_limits(limits, limits.max_reference_seconds);
        let mut declared = 0.0;
        for (field, bytes) in &self.clips {
            let h =
                higgs_audio_io::probe_bytes(bytes, &per_clip).map_err(|e| audio_error(field, e))?;
            declared += h.declared_seconds.unwrap_or(0.0);
            if declared > limits.max_reference_total_seconds {
                return Err(total_too_long(declared, limits));
            }
        }
        let mut left = limits.max_reference_total_seconds;
        let mut out = Vec::with_capacity(self.clips.len());
        for (field, bytes) in &self.clips {
            let budget = left.min(limits.max_reference_seconds);
            let l = decode_limits(limits, budget);
            let samples = higgs_audio_io::load_bytes(bytes, rate, &l).map_err(|e| match e {
                higgs_audio_io::AudioError::TooLong { .. }
                    if budget < limits.max_reference_seconds =>
                {
                    total_too_long(limits.max_reference_total_seconds - left + budget, limits)
                }
                e => audio_error(field, e),
            })?;
            left -= samples.len() as f64 / f64::from(rate.max(1));
            out.push(samples);
        }
        Ok(out)
    }
}

fn check_count(n: usize, limits: &Limits) -> Result<(), ApiError> {
    if n > limits.max_reference_clips {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "more than {} reference audio clips in one request; send at most {}",
                limits.max_reference_clips, limits.max_reference_clips
            ),
        ));
    }
    Ok(())
}

fn decode_limits(limits: &Limits, seconds: f64) -> higgs_audio_io::DecodeLimits {
    higgs_audio_io::DecodeLimits {
        max_bytes: limits.max_reference_bytes,
        max_duration_secs: seconds,
        ..Default::default()
    }
}

fn total_too_long(seconds: f64, limits: &Limits) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "the reference audio of this request lasts more than {seconds:.1} s; the limit is {:.0} s in all (send shorter clips: a few seconds of clean speech suffice)",
            limits.max_reference_total_seconds
        ),
    )
}

fn audio_error(field: &str, e: higgs_audio_io::AudioError) -> ApiError {
    let kind = if matches!(
        e,
        higgs_audio_io::AudioError::TooLarge { .. } | higgs_audio_io::AudioError::TooLong { .. }
    ) {
        ErrorKind::PayloadTooLarge
    } else {
        ErrorKind::InvalidRequest
    };
    ApiError::new(kind, format!("`{field}`: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wav(seconds: f64, rate: u32) -> Vec<u8> {
        let n = (seconds * f64::from(rate)) as usize;
        higgs_audio_io::encode(higgs_audio_io::AudioFormat::Wav, &vec![0.1; n], rate).unwrap()
    }

    #[test]
    fn parts_beyond_the_count_are_refused_before_decoding() {
        let limits = Limits::default();
        let mut p = PendingAudio::default();
        for i in 0..limits.max_reference_clips {
            assert_eq!(p.push("m", b"not audio".to_vec(), &limits).unwrap(), i);
        }
        let e = p.push("m", b"not audio".to_vec(), &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
    }

    #[test]
    fn declared_lengths_over_the_request_budget_are_refused_from_the_headers() {
        let limits = Limits {
            max_reference_seconds: 10.0,
            max_reference_total_seconds: 12.0,
            ..Default::default()
        };
        let mut p = PendingAudio::default();
        p.push("a", wav(5.0, 8000), &limits).unwrap();
        p.push("b", wav(5.0, 8000), &limits).unwrap();
        // The third clip is garbage: a refusal from the headers never reaches it.
        p.push("c", wav(5.0, 8000), &limits).unwrap();
        p.push("d", b"RIFF garbage".to_vec(), &limits).unwrap();
        let e = p.decode(8000, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge, "{e:?}");
        assert!(e.message.contains("in all"), "{}", e.message);
        let mut ok = PendingAudio::default();
        ok.push("a", wav(5.0, 8000), &limits).unwrap();
        ok.push("b", wav(5.0, 8000), &limits).unwrap();
        let d = ok.decode(8000, &limits).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].len(), 40_000);
    }
}
