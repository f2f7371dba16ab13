//! Parity of encode/decode against the reference goldens (`codec/golden.safetensors`).
//! Cases are discovered from the array names, so a fixture set with other sizes runs unchanged.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use higgs_codec::Codec;
use higgs_testkit::{assert_close, assert_ids_eq, fixtures_root, Golden};
use std::sync::OnceLock;

fn codec() -> &'static Codec {
    static C: OnceLock<Codec> = OnceLock::new();
    C.get_or_init(|| {
        Codec::load(
            &fixtures_root().join("codec"),
            &higgs_testkit::test_device(),
        )
        .unwrap()
    })
}

fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| Golden::load("codec/golden.safetensors"))
}

/// Case names (`enc24`, `dec24`, ...) that have an array called `suffix`.
fn cases_with(suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = golden()
        .arrays
        .keys()
        .filter_map(|k| k.strip_suffix(&format!(".{suffix}")).map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Feature tolerance of the fixture README: 1e-4 relative to the array's max |value|.
fn rel_tol(expected: &Tensor) -> f32 {
    let m = expected
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    1e-4 * m.max(1e-12)
}

fn check_rel(what: &str, actual: &Tensor, expected: &Tensor) {
    let tol = rel_tol(expected);
    if actual.dims() == expected.dims() {
        let (d, _) = higgs_testkit::max_abs_diff(actual, expected);
        eprintln!("{what}: max |diff| {d:.3e} (tol {tol:.3e})");
    }
    assert_close(what, actual, expected, tol);
}

/// Codes decoded by a `dec*` case: its own `codes`, else those of the matching `enc*` case.
fn decode_codes(case: &str) -> Tensor {
    let g = golden();
    let own = format!("{case}.codes");
    if g.has(&own) {
        return g.get(&own).clone();
    }
    let enc = format!("enc{}.codes", case.trim_start_matches("dec"));
    assert!(g.has(&enc), "no codes for decode case {case}");
    g.get(&enc).clone()
}

/// Input of an encode case: the 24 kHz wave the encoder sees (resampled by the caller when the
/// case started at another rate: that is higgs-audio-io's job).
fn encode_input(case: &str) -> Vec<f32> {
    let g = golden();
    let name = if g.has(&format!("{case}.resampled_24k")) {
        format!("{case}.resampled_24k")
    } else {
        format!("{case}.input_wave")
    };
    g.f32(&name)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn parity_decode_waveforms() {
    let cases = cases_with("waveform");
    assert!(!cases.is_empty(), "no decode cases in the golden file");
    for case in cases {
        let codes = decode_codes(&case);
        let wav = codec().decode(&codes).unwrap();
        let expected = golden().f32(&format!("{case}.waveform"));
        let actual = Tensor::from_vec(wav, expected.dims(), &Device::Cpu).unwrap();
        // Waveforms: 1e-4 absolute (fixture README).
        let (d, _) = higgs_testkit::max_abs_diff(&actual, &expected);
        eprintln!("{case}.waveform: max |diff| {d:.3e} (tol 1e-4)");
        assert_close(&format!("{case}.waveform"), &actual, &expected, 1e-4);
    }
}

#[test]
fn parity_decode_intermediates() {
    for case in cases_with("waveform") {
        let codes = decode_codes(&case);
        let tr = codec().decode_traced(&codes).unwrap();
        let g = golden();
        for (name, actual) in [
            ("quantized", &tr.quantized),
            ("fc_post2_output", &tr.fc_post2_output),
        ] {
            let key = format!("{case}.{name}");
            if g.has(&key) {
                check_rel(&key, actual, &g.f32(&key));
            }
        }
    }
}

#[test]
fn parity_encode_codes() {
    let cases: Vec<String> = cases_with("codes")
        .into_iter()
        .filter(|c| {
            golden().has(&format!("{c}.input_wave")) || golden().has(&format!("{c}.resampled_24k"))
        })
        .collect();
    assert!(!cases.is_empty(), "no encode cases in the golden file");
    for case in cases {
        let codes = codec().encode(&encode_input(&case)).unwrap();
        let expected = golden().get(&format!("{case}.codes"));
        assert_eq!(codes.dims(), expected.dims(), "{case}.codes shape");
        let actual: Vec<i64> = codes
            .to_dtype(DType::I64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_ids_eq(
            &format!("{case}.codes"),
            &actual,
            &golden().i64s(&format!("{case}.codes")),
        );
    }
}

#[test]
fn parity_encode_intermediates() {
    let g = golden();
    let cases: Vec<String> = cases_with("codes")
        .into_iter()
        .filter(|c| g.has(&format!("{c}.input_wave")) || g.has(&format!("{c}.resampled_24k")))
        .collect();
    for case in cases {
        let tr = codec().encode_traced(&encode_input(&case)).unwrap();
        let mut checked = 0;
        let mut check = |name: &str, actual: Option<&Tensor>| {
            let key = format!("{case}.{name}");
            if g.has(&key) {
                let actual = actual.unwrap_or_else(|| panic!("{key}: not produced by the encoder"));
                check_rel(&key, actual, &g.f32(&key));
                checked += 1;
            }
        };
        // The 16 kHz resample and HuBERT input only exist for native 24 kHz inputs.
        check("semantic_resampled_16k", Some(&tr.semantic_resampled));
        // HuBERT input = the resampled wave zero-padded by half a HuBERT hop on each side.
        let half_hop = codec().config().semantic_hop / 2;
        let padded = tr
            .semantic_resampled
            .pad_with_zeros(0, half_hop, half_hop)
            .unwrap();
        check("semantic_model_input", Some(&padded));
        check("semantic_hidden_states", Some(&tr.semantic_hidden_states));
        check("semantic_features", Some(&tr.semantic_features));
        check("e_semantic", Some(&tr.e_semantic));
        check("e_acoustic", Some(&tr.e_acoustic_first_pass));
        check("e_acoustic_first_pass", Some(&tr.e_acoustic_first_pass));
        check("e_acoustic_padded_pass", tr.e_acoustic_padded_pass.as_ref());
        check("quantizer_input", Some(&tr.quantizer_input));
        check("vq_residual_inputs", Some(&tr.vq_residual_inputs));
        check("vq_quantized", Some(&tr.vq_quantized));
        if g.has(&format!("{case}.fc_prior_input")) {
            let cat = Tensor::cat(
                &[
                    tr.e_acoustic_padded_pass
                        .as_ref()
                        .unwrap_or(&tr.e_acoustic_first_pass),
                    &tr.e_semantic,
                ],
                0,
            )
            .unwrap()
            .t()
            .unwrap();
            check("fc_prior_input", Some(&cat));
        }
        assert!(checked > 0, "{case}: no intermediate compared");
    }
}
