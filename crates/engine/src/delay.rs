//! The delay pattern, mirroring `build_delay_pattern_mask` / `revert_delay_pattern`
//! (`boson_multimodal/model/higgs_audio/utils.py`) and the post-processing of `serve_engine.generate`
//! (reference spec §3.1, §4.2).
//!
//! Codes are stored codebook-major: a `Codes` value holds `num_codebooks` rows of equal length.

pub use higgs_codec::Codes;

/// `[bos] + codes + [eos]` then the delay pattern: row k shifted right by k, lower-left filled with
/// `bos`, upper-right with `eos`. A clip of T frames becomes T + 1 + num_codebooks columns.
pub fn build_delayed_segment(codes: &Codes, bos: u32, eos: u32) -> Codes {
    let n = codes.num_codebooks;
    let t = codes.frames();
    let stream = t + 2;
    let len = stream + n - 1;
    let mut data = vec![0u32; n * len];
    for k in 0..n {
        for j in 0..len {
            data[k * len + j] = if j < k {
                bos
            } else if j < k + stream {
                let s = j - k;
                if s == 0 {
                    bos
                } else if s == stream - 1 {
                    eos
                } else {
                    codes.get(k, s - 1)
                }
            } else {
                eos
            };
        }
    }
    Codes {
        num_codebooks: n,
        data,
    }
}

/// `revert_delay_pattern`: row k keeps columns k .. L - n + k, giving L - n + 1 columns.
pub fn revert_delay_pattern(delayed: &Codes) -> Codes {
    let n = delayed.num_codebooks;
    let l = delayed.frames();
    if l < n {
        return Codes::empty(n);
    }
    let out_len = l - n + 1;
    let mut data = Vec::with_capacity(n * out_len);
    for k in 0..n {
        data.extend_from_slice(&delayed.row(k)[k..k + out_len]);
    }
    Codes {
        num_codebooks: n,
        data,
    }
}

/// The reference's post-processing of one generated segment: revert, clip to
/// `[0, codebook_size - 1]`, drop the first (BOS) and last column.
pub fn finalize_segment(delayed: &Codes, codebook_size: u32) -> Codes {
    let r = revert_delay_pattern(delayed);
    let n = r.num_codebooks;
    let t = r.frames();
    if t <= 2 {
        return Codes::empty(n);
    }
    let mut data = Vec::with_capacity(n * (t - 2));
    for k in 0..n {
        data.extend(r.row(k)[1..t - 1].iter().map(|&v| v.min(codebook_size - 1)));
    }
    Codes {
        num_codebooks: n,
        data,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn delayed_segment_layout_matches_spec() {
        let codes = Codes::new(3, vec![1, 2, 3, 4, 5, 6]).unwrap(); // 3 codebooks x 2 frames
        let d = build_delayed_segment(&codes, 100, 101);
        assert_eq!(d.frames(), 2 + 3 + 1);
        assert_eq!(d.row(0), &[100, 1, 2, 101, 101, 101]);
        assert_eq!(d.row(1), &[100, 100, 3, 4, 101, 101]);
        assert_eq!(d.row(2), &[100, 100, 100, 5, 6, 101]);
        let r = revert_delay_pattern(&d);
        assert_eq!(r.row(1), &[100, 3, 4, 101]);
        let f = finalize_segment(&d, 50);
        // clipped to 49, bos/eos columns dropped
        assert_eq!(f, Codes::new(3, vec![1, 2, 3, 4, 5, 6]).unwrap());
    }

    #[test]
    fn tiny_segments_do_not_panic() {
        let d = Codes::empty(8);
        assert_eq!(finalize_segment(&d, 1024).frames(), 0);
        let one = Codes::new(8, vec![1024; 8]).unwrap();
        assert_eq!(finalize_segment(&one, 1024).frames(), 0);
    }
}
