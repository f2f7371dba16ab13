//! `Codec::encoded_frames` agrees with the reference's frame counts in the goldens (including the
//! re-encode-with-padding case), for every 24 kHz encode case of the fixture set.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::Device;
use higgs_codec::Codec;
use higgs_testkit::{fixture, Golden};

#[test]
fn parity_encoded_frames_match_golden_code_lengths() {
    let codec = Codec::load(&fixture("codec"), &Device::Cpu).unwrap();
    let g = Golden::load("codec/golden.safetensors");
    let mut checked = 0;
    for name in g.names_with_prefix("") {
        let Some(case) = name.strip_suffix(".codes") else {
            continue;
        };
        // Cases whose input is at the codec rate (others are resampled first).
        let input = format!("{case}.input_wave");
        if !g.has(&input) || g.has(&format!("{case}.resampled_24k")) {
            continue;
        }
        let n = g.get(&input).dims1().unwrap();
        let (_, frames) = g.get(&name).dims2().unwrap();
        assert_eq!(codec.encoded_frames(n), Some(frames), "{case}: {n} samples");
        checked += 1;
    }
    assert!(checked >= 1, "no 24 kHz encode case in the fixture set");
}
