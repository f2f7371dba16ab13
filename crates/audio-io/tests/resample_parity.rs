//! Parity of our resampler with `librosa.resample(..., res_type="soxr_hq")` on the codec goldens.
#![allow(clippy::unwrap_used)]

use higgs_audio_io::{resample, resampled_len};
use higgs_testkit::Golden;

/// Max abs difference we accept against librosa (measured: 4.8e-7). Same libsoxr recipe; what remains is float
/// rounding from a different FFT build (python-soxr's SIMD engine vs the portable one here).
const TOL: f32 = 1e-5;

fn check(g: &Golden, prefix: &str, from: u32) {
    let input = g
        .f32(&format!("{prefix}.input_wave"))
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want = g
        .f32(&format!("{prefix}.resampled_24k"))
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got = resample(&input, from, 24000).unwrap();
    assert_eq!(got.len(), want.len(), "{prefix}: length");
    assert_eq!(resampled_len(input.len(), from, 24000), want.len());
    let (mut max, mut at) = (0f32, 0usize);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let d = (a - b).abs();
        if d > max {
            max = d;
            at = i;
        }
    }
    let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "{prefix}: n_in={} n_out={} max_abs_diff={max:e} at {at} (golden peak {peak})",
        input.len(),
        got.len()
    );
    assert!(max <= TOL, "{prefix}: max abs diff {max} at {at} > {TOL}");
}

#[test]
fn resample_16k_to_24k_matches_librosa_soxr_hq() {
    let g = Golden::load("codec/golden.safetensors");
    check(&g, "enc16", 16000);
}

#[test]
fn resample_44k1_to_24k_matches_librosa_soxr_hq() {
    let g = Golden::load("codec/golden.safetensors");
    check(&g, "enc44", 44100);
}
