//! Checkpoint loading: both layouts of the same random checkpoint agree, our `.pth` writer
//! round-trips the fixture, and broken inputs give the right errors without panicking.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use higgs_codec::pth_writer::write_state_dict;
use higgs_codec::{write_random_checkpoint, CheckpointLayout, Codec, CodecError, Preset};
use higgs_testkit::{assert_close, fixtures_root, Golden};
use std::path::{Path, PathBuf};

/// A fresh scratch directory under the system temp dir (no extra crates needed).
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs-codec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

fn test_codes(codec: &Codec, frames: usize) -> Tensor {
    let v: Vec<u32> = (0..codec.num_codebooks() * frames)
        .map(|i| ((i * 7919 + 13) % codec.codebook_size()) as u32)
        .collect();
    Tensor::from_vec(v, (codec.num_codebooks(), frames), &Device::Cpu).unwrap()
}

#[test]
fn legacy_and_hf_layouts_of_one_random_checkpoint_agree() {
    let root = scratch("layouts");
    let (legacy, hf) = (root.join("legacy"), root.join("hf"));
    write_random_checkpoint(&legacy, Preset::Tiny, CheckpointLayout::Legacy, 42).unwrap();
    write_random_checkpoint(&hf, Preset::Tiny, CheckpointLayout::Hf, 42).unwrap();
    let a = Codec::load(&legacy, &Device::Cpu).unwrap();
    let b = Codec::load(&hf, &Device::Cpu).unwrap();
    assert_eq!(a.config().layout, CheckpointLayout::Legacy);
    assert_eq!(b.config().layout, CheckpointLayout::Hf);
    assert_eq!(a.num_codebooks(), b.num_codebooks());
    let codes = test_codes(&a, 12);
    let (wa, wb) = (a.decode(&codes).unwrap(), b.decode(&codes).unwrap());
    let ta = Tensor::new(wa.as_slice(), &Device::Cpu).unwrap();
    let tb = Tensor::new(wb.as_slice(), &Device::Cpu).unwrap();
    // Same weights; the HF file holds the weight norm folded by the same code, so results match.
    assert_close("legacy vs hf decode", &ta, &tb, 1e-6);
    // Output is O(1), finite (the generator calibrates RMS to 0.1).
    let peak = wa.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        peak.is_finite() && peak > 1e-3 && peak < 10.0,
        "peak {peak}"
    );
    // Encode agrees too.
    let wave: Vec<f32> = (0..24000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let (ca, cb) = (a.encode(&wave).unwrap(), b.encode(&wave).unwrap());
    assert_eq!(ca.to_vec2::<u32>().unwrap(), cb.to_vec2::<u32>().unwrap());
    std::fs::remove_dir_all(&root).unwrap();
}

/// What `--layout hf` wrote before it matched transformers: HuBERT's positional conv folded
/// into a plain `weight`, no semantic decoder, no `fc1`. Such files must still load, and encode
/// and decode as the transformers-shaped file of the same weights.
#[test]
fn hf_files_from_before_the_transformers_names_still_load() {
    let root = scratch("old-hf");
    let (new, old) = (root.join("new"), root.join("old"));
    write_random_checkpoint(&new, Preset::Tiny, CheckpointLayout::Hf, 5).unwrap();
    copy_dir(&new, &old);
    let path = old.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let pc = "semantic_model.encoder.pos_conv_embed.conv";
    let g = t
        .remove(&format!("{pc}.parametrizations.weight.original0"))
        .unwrap();
    let v = t
        .remove(&format!("{pc}.parametrizations.weight.original1"))
        .unwrap();
    // torch weight_norm(dim=2): w = g · v / ‖v‖, the norm over dims 0 and 1 for every tap.
    let norm = v
        .sqr()
        .unwrap()
        .sum_keepdim(0)
        .unwrap()
        .sum_keepdim(1)
        .unwrap()
        .sqrt()
        .unwrap();
    let w = v.broadcast_mul(&g.broadcast_div(&norm).unwrap()).unwrap();
    t.insert(format!("{pc}.weight"), w);
    t.retain(|n, _| !n.starts_with("decoder_semantic.") && !n.starts_with("fc1."));
    candle_core::safetensors::save(&t, &path).unwrap();
    let a = Codec::load(&new, &Device::Cpu).unwrap();
    let b = Codec::load(&old, &Device::Cpu).unwrap();
    let wave: Vec<f32> = (0..24000).map(|i| (i as f32 * 0.031).sin() * 0.4).collect();
    let (ta, tb) = (
        a.encode_traced(&wave).unwrap(),
        b.encode_traced(&wave).unwrap(),
    );
    // The positional conv acts in every HuBERT layer: its hidden states must agree (folded at load
    // vs folded by hand, same formula; only rounding may differ).
    assert_close(
        "HuBERT hidden states",
        &ta.semantic_hidden_states,
        &tb.semantic_hidden_states,
        1e-5,
    );
    assert_eq!(
        ta.codes.to_vec2::<u32>().unwrap(),
        tb.codes.to_vec2::<u32>().unwrap()
    );
    let codes = test_codes(&a, 8);
    let (wa, wb) = (a.decode(&codes).unwrap(), b.decode(&codes).unwrap());
    assert_eq!(wa, wb);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn our_pth_writer_round_trips_the_fixture_checkpoint() {
    // Re-save the fixture's state dict with our writer; decoding must still match the golden.
    let src = fixtures_root().join("codec");
    let dir = scratch("rewrite");
    copy_dir(&src, &dir);
    let mut tensors = candle_core::pickle::read_all(src.join("model.pth")).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_state_dict(&dir.join("model.pth"), "model", &tensors).unwrap();
    let codec = Codec::load(&dir, &Device::Cpu).unwrap();
    let g = Golden::load("codec/golden.safetensors");
    let codes = g.get("decrand.codes");
    let wav = codec.decode(codes).unwrap();
    let expected = g.f32("decrand.waveform");
    let actual = Tensor::from_vec(wav, expected.dims(), &Device::Cpu).unwrap();
    assert_close("rewritten pth decode", &actual, &expected, 1e-4);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tiny_hf(name: &str) -> PathBuf {
    let dir = scratch(name);
    write_random_checkpoint(&dir, Preset::Tiny, CheckpointLayout::Hf, 7).unwrap();
    dir
}

#[test]
fn missing_tensor_is_named() {
    let dir = tiny_hf("missing");
    let path = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    t.remove("acoustic_decoder.block.2.conv_t1.bias").unwrap();
    candle_core::safetensors::save(&t, &path).unwrap();
    match Codec::load(&dir, &Device::Cpu) {
        Err(CodecError::MissingTensor { name, path: p }) => {
            assert_eq!(name, "acoustic_decoder.block.2.conv_t1.bias");
            assert_eq!(p, path);
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_tensor_in_legacy_pth_is_named() {
    let src = fixtures_root().join("codec");
    let dir = scratch("missing-pth");
    copy_dir(&src, &dir);
    let tensors: Vec<_> = candle_core::pickle::read_all(src.join("model.pth"))
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "quantizer.vq.layers.3._codebook.embed")
        .collect();
    write_state_dict(&dir.join("model.pth"), "model", &tensors).unwrap();
    let err = Codec::load(&dir, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, CodecError::MissingTensor { name, .. } if name == "quantizer.vq.layers.3._codebook.embed"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn misshaped_tensor_reports_expected_and_actual() {
    let dir = tiny_hf("misshaped");
    let path = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let name = "acoustic_decoder.block.0.res_unit1.snake1.alpha";
    let wrong = Tensor::ones((1, 3, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    t.insert(name.to_string(), wrong);
    candle_core::safetensors::save(&t, &path).unwrap();
    match Codec::load(&dir, &Device::Cpu) {
        Err(e @ CodecError::TensorShape { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(name)
                    && msg.contains("[1, 3, 1]")
                    && msg.contains("model.safetensors"),
                "{msg}"
            );
        }
        other => panic!("expected TensorShape, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_and_truncated_files_are_errors() {
    let dir = tiny_hf("corrupt");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::Checkpoint { .. })
    ));
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::Checkpoint { .. })
    ));

    let src = fixtures_root().join("codec");
    let legacy = scratch("corrupt-pth");
    copy_dir(&src, &legacy);
    let pth = legacy.join("model.pth");
    let bytes = std::fs::read(&pth).unwrap();
    std::fs::write(&pth, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(
        Codec::load(&legacy, &Device::Cpu),
        Err(CodecError::Checkpoint { .. })
    ));
    std::fs::write(&pth, vec![0x42u8; 4096]).unwrap();
    assert!(matches!(
        Codec::load(&legacy, &Device::Cpu),
        Err(CodecError::Checkpoint { .. })
    ));
    std::fs::remove_file(&pth).unwrap();
    assert!(matches!(
        Codec::load(&legacy, &Device::Cpu),
        Err(CodecError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&legacy).unwrap();
}

#[test]
fn unknown_model_type_and_bad_configs_are_rejected() {
    let dir = scratch("config");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::UnknownLayout { .. })
    ));
    std::fs::write(dir.join("config.json"), r#"{"hidden_size": 3}"#).unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::UnknownLayout { .. })
    ));
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::Config { .. })
    ));
    std::fs::write(
        dir.join("config.json"),
        r#"{"ratios": [8, 0], "bins": 1024}"#,
    )
    .unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::Config { .. })
    ));
    std::fs::write(
        dir.join("config.json"),
        r#"{"ratios": [8], "bins": [8, 5, 5]}"#,
    )
    .unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::Config { .. })
    ));
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(matches!(
        Codec::load(&dir, &Device::Cpu),
        Err(CodecError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let codec = Codec::load(&fixtures_root().join("codec"), &Device::Cpu).unwrap();
    assert!(codec.encode(&[]).is_err());
    assert!(codec.encode(&[0.0; 10]).is_err());
    assert!(codec.encode(&[f32::NAN; 24000]).is_err());
    let n_q = codec.num_codebooks();
    let too_big = Tensor::full(codec.codebook_size() as u32, (n_q, 3), &Device::Cpu).unwrap();
    assert!(codec.decode(&too_big).is_err());
    let wrong_q = Tensor::zeros((n_q + 1, 3), candle_core::DType::U32, &Device::Cpu).unwrap();
    assert!(codec.decode(&wrong_q).is_err());
    let negative = Tensor::full(-1i64, (n_q, 3), &Device::Cpu).unwrap();
    assert!(codec.decode(&negative).is_err());
    let empty = Tensor::zeros((n_q, 0), candle_core::DType::U32, &Device::Cpu).unwrap();
    assert!(codec.decode(&empty).is_err());
}

#[test]
fn batched_decode_equals_single_decodes() {
    let codec = Codec::load(
        &fixtures_root().join("codec"),
        &higgs_testkit::test_device(),
    )
    .unwrap();
    let a = test_codes(&codec, 9);
    let b = (test_codes(&codec, 9) + 5.0)
        .unwrap()
        .to_dtype(candle_core::DType::U32)
        .unwrap();
    let b = b
        .broadcast_minimum(&Tensor::new(codec.codebook_size() as u32 - 1, &Device::Cpu).unwrap())
        .unwrap();
    let batch = Tensor::stack(&[&a, &b], 0).unwrap();
    let out = codec.decode_batch(&batch).unwrap();
    for (i, c) in [a, b].iter().enumerate() {
        let single = Tensor::new(codec.decode(c).unwrap().as_slice(), &Device::Cpu).unwrap();
        assert_close("batched row", &out.get(i).unwrap(), &single, 1e-5);
    }
}
