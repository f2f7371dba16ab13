//! Checkpoint loading: both layouts, sharding, split tensors, `model.` prefixes, and every error
//! path (missing, mis-shaped, corrupt files) on random checkpoints generated in the real layouts.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::{DType, Device, Tensor};
use higgs_model::random::{Preset, RandomCheckpoint};
use higgs_model::{
    CheckpointLayout, ForwardError, ForwardOptions, HiggsAudioModel, LoadError, LogitsRequest,
    PositionKind, SeqInput,
};
use std::collections::HashMap;
use std::path::Path;

fn tiny(layout: CheckpointLayout) -> RandomCheckpoint {
    RandomCheckpoint::new(Preset::Tiny, layout)
}

fn write(ck: &RandomCheckpoint) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ck.write(dir.path()).unwrap();
    dir
}

/// Logits of a fixed mixed text/audio prompt.
fn logits(dir: &Path) -> (Tensor, Tensor) {
    let model = HiggsAudioModel::load(dir, DType::F32, &Device::Cpu).unwrap();
    let cfg = model.config().clone();
    let mut seq = SeqInput::new(0).with_logits(LogitsRequest::BOTH);
    for id in [128000u32, 128006, 9125, 128007, 271, 40, 1093, 128009] {
        seq.push_text(id);
    }
    for t in 0..5u32 {
        let col: Vec<u32> = (0..cfg.num_codebooks as u32)
            .map(|k| (t * 37 + k * 101) % 1026)
            .collect();
        seq.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
    }
    let mut cache = model.new_cache(1, 64).unwrap();
    let out = model
        .forward(&[seq], &mut cache, ForwardOptions::default())
        .unwrap();
    (out.text_logits.unwrap(), out.audio_logits.unwrap())
}

fn assert_same(a: &(Tensor, Tensor), b: &(Tensor, Tensor)) {
    let d0 = higgs_testkit::max_abs_diff(&a.0, &b.0).0;
    let d1 = higgs_testkit::max_abs_diff(&a.1, &b.1).0;
    assert_eq!((d0, d1), (0.0, 0.0), "logits differ");
}

fn load_err(dir: &Path) -> LoadError {
    match HiggsAudioModel::load(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

fn rewrite_weights(dir: &Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    f(&mut t);
    candle_core::safetensors::save(&t, &path).unwrap();
}

#[test]
fn legacy_and_hf_layouts_give_identical_logits() {
    let legacy = write(&tiny(CheckpointLayout::Legacy));
    let hf = write(&tiny(CheckpointLayout::Hf));
    let a = logits(legacy.path());
    assert_same(&a, &logits(hf.path()));
    // Random weights must make a difference: another seed gives other logits.
    let mut other = tiny(CheckpointLayout::Legacy);
    other.seed += 1;
    let o = write(&other);
    assert!(higgs_testkit::max_abs_diff(&a.0, &logits(o.path()).0).0 > 1e-3);
}

#[test]
fn sharded_equals_single_file() {
    let single = write(&tiny(CheckpointLayout::Legacy));
    let mut ck = tiny(CheckpointLayout::Legacy);
    ck.max_shard_bytes = Some(4_000_000);
    let sharded = write(&ck);
    let n_shards = std::fs::read_dir(sharded.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("model-")
        })
        .count();
    assert!(n_shards > 2, "expected several shards, got {n_shards}");
    assert!(sharded.path().join("model.safetensors.index.json").exists());
    assert_same(&logits(single.path()), &logits(sharded.path()));
}

#[test]
fn split_frozen_trainable_prefixed_and_unused_tensors_load() {
    let base = write(&tiny(CheckpointLayout::Legacy));
    let reference = logits(base.path());
    let dir = write(&tiny(CheckpointLayout::Legacy));
    rewrite_weights(dir.path(), |t| {
        for (name, frozen, trainable) in [
            (
                "embed_tokens.weight",
                "embed_tokens.embedding_frozen.weight",
                "embed_tokens.embedding_trainable.weight",
            ),
            (
                "audio_decoder_proj.audio_lm_head.weight",
                "audio_decoder_proj.audio_lm_head.linear_frozen.weight",
                "audio_decoder_proj.audio_lm_head.linear_trainable.weight",
            ),
        ] {
            let w = t.remove(name).unwrap();
            let rows = w.dim(0).unwrap();
            t.insert(frozen.into(), w.narrow(0, 0, rows - 100).unwrap());
            t.insert(trainable.into(), w.narrow(0, rows - 100, 100).unwrap());
        }
        // A `model.`-prefixed legacy name and keys the loader must ignore.
        let n = t.remove("norm.weight").unwrap();
        t.insert("model.norm.weight".into(), n);
        t.insert(
            "audio_codebook_weights".into(),
            Tensor::zeros(8, DType::F32, &Device::Cpu).unwrap(),
        );
        t.insert(
            "audio_tower.conv1.weight".into(),
            Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert_same(&reference, &logits(dir.path()));
}

/// A transformers `save_pretrained` checkpoint has no `text_lm_head` (`use_text_head=False`).
/// It loads; text logits are an error (before anything is written to the cache), audio logits
/// are those of the same weights with a head.
#[test]
fn checkpoint_without_text_head_loads_and_refuses_text_logits() {
    let with = write(&tiny(CheckpointLayout::Hf));
    let mut ck = tiny(CheckpointLayout::Hf);
    ck.text_head = false;
    let without = write(&ck);
    let full = HiggsAudioModel::load(with.path(), DType::F32, &Device::Cpu).unwrap();
    let model = HiggsAudioModel::load(without.path(), DType::F32, &Device::Cpu).unwrap();
    assert!(full.has_text_head() && full.config().text_head);
    assert!(!model.has_text_head() && !model.config().text_head);

    let cfg = model.config().clone();
    let prompt = |l: LogitsRequest| {
        let mut seq = SeqInput::new(0).with_logits(l);
        for id in [128000u32, 128006, 9125, 128007, 271, 128013] {
            seq.push_text(id);
        }
        for t in 0..3u32 {
            let col: Vec<u32> = (0..cfg.num_codebooks as u32)
                .map(|k| (t * 37 + k * 101) % 1026)
                .collect();
            seq.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
        }
        seq
    };
    let mut cache = model.new_cache(1, 64).unwrap();
    for l in [LogitsRequest::TEXT, LogitsRequest::BOTH] {
        match model.forward(&[prompt(l)], &mut cache, ForwardOptions::default()) {
            Err(e @ ForwardError::NoTextHead) => assert!(e.to_string().contains("text head")),
            other => panic!("expected NoTextHead, got {other:?}"),
        }
        assert_eq!(cache.len(0), 0, "a refused forward writes nothing");
    }
    let normed = Tensor::zeros((1, cfg.hidden_size), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        model.text_head(&normed),
        Err(ForwardError::NoTextHead)
    ));
    // Audio only works, and leaving the head out changed no other weight.
    let audio = |m: &HiggsAudioModel| {
        let mut cache = m.new_cache(1, 64).unwrap();
        let out = m
            .forward(
                &[prompt(LogitsRequest::AUDIO)],
                &mut cache,
                ForwardOptions::default(),
            )
            .unwrap();
        assert!(out.text_logits.is_none());
        out.audio_logits.unwrap()
    };
    assert_eq!(
        higgs_testkit::max_abs_diff(&audio(&model), &audio(&full)).0,
        0.0
    );
}

/// Only one half of a split text head is a broken checkpoint, not a checkpoint without a head.
#[test]
fn half_a_split_text_head_is_an_error() {
    let dir = write(&tiny(CheckpointLayout::Legacy));
    rewrite_weights(dir.path(), |t| {
        let w = t.remove("audio_decoder_proj.text_lm_head.weight").unwrap();
        t.insert(
            "audio_decoder_proj.text_lm_head.linear_frozen.weight".into(),
            w.narrow(0, 0, 1000).unwrap(),
        );
    });
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::MissingTensor { .. }), "{e:?}");
    assert!(e.to_string().contains("text_lm_head"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = write(&tiny(CheckpointLayout::Legacy));
    rewrite_weights(dir.path(), |t| {
        t.remove("layers.1.audio_mlp.up_proj.weight");
    });
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::MissingTensor { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("layers.1.audio_mlp.up_proj.weight"), "{msg}");
}

#[test]
fn mis_shaped_tensor_names_tensor_file_and_shapes() {
    let dir = write(&tiny(CheckpointLayout::Legacy));
    rewrite_weights(dir.path(), |t| {
        t.insert(
            "layers.2.self_attn.k_proj.weight".into(),
            Tensor::zeros((3, 32), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = load_err(dir.path());
    match &e {
        LoadError::ShapeMismatch {
            name,
            file,
            expected,
            actual,
        } => {
            assert_eq!(name, "layers.2.self_attn.k_proj.weight");
            assert!(file.ends_with("model.safetensors"));
            assert_eq!(expected, &vec![16, 32]);
            assert_eq!(actual, &vec![3, 32]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("[16, 32]") && msg.contains("[3, 32]") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn config_that_disagrees_with_weights_is_a_shape_error() {
    let dir = write(&tiny(CheckpointLayout::Hf));
    let p = dir.path().join("config.json");
    let s = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 48");
    std::fs::write(&p, s).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::ShapeMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("model.layers.0.")
            && msg.contains("mlp.gate_proj.weight")
            && msg.contains("[64, 32]")
            && msg.contains("[48, 32]"),
        "{msg}"
    );
}

#[test]
fn corrupt_truncated_and_missing_files_are_errors_not_panics() {
    let dir = write(&tiny(CheckpointLayout::Legacy));
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    // Truncated in the data section.
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        load_err(dir.path()),
        LoadError::CorruptWeights { .. }
    ));
    // Garbage, and a file shorter than the length prefix.
    std::fs::write(&w, b"definitely not safetensors, just text").unwrap();
    assert!(matches!(
        load_err(dir.path()),
        LoadError::CorruptWeights { .. }
    ));
    std::fs::write(&w, b"abc").unwrap();
    assert!(matches!(
        load_err(dir.path()),
        LoadError::CorruptWeights { .. }
    ));
    // No weights at all.
    std::fs::remove_file(&w).unwrap();
    assert!(matches!(load_err(dir.path()), LoadError::NoWeights { .. }));
    // No config.
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert!(matches!(load_err(dir.path()), LoadError::Io { .. }));
}

#[test]
fn bad_index_is_reported() {
    let mut ck = tiny(CheckpointLayout::Legacy);
    ck.max_shard_bytes = Some(20_000_000);
    let dir = write(&ck);
    let idx = dir.path().join("model.safetensors.index.json");
    let first = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("model-00001")
        })
        .unwrap();
    std::fs::remove_file(&first).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::BadIndex { .. }), "{e:?}");
    assert!(e.to_string().contains("model-00001"), "{e}");
    std::fs::write(&idx, r#"{"weight_map": {"x": "../../etc/passwd"}}"#).unwrap();
    assert!(matches!(load_err(dir.path()), LoadError::BadIndex { .. }));
    std::fs::write(&idx, "{").unwrap();
    assert!(matches!(load_err(dir.path()), LoadError::BadIndex { .. }));
}

#[test]
fn generated_tokenizer_matches_the_fixture_special_tokens() {
    let fixture = higgs_testkit::fixture("text-tokenizer/tokenizer.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let added = v["added_tokens"].as_array().unwrap();
    assert!(!added.is_empty());
    for t in added {
        let id = t["id"].as_u64().unwrap() as u32;
        assert_eq!(
            higgs_model::random::special_token_name(id).as_deref(),
            t["content"].as_str(),
            "id {id}"
        );
    }
}
