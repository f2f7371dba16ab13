//! `--layout hf` random codec checkpoints hold exactly the tensors transformers'
//! `HiggsAudioV2TokenizerModel` has (acoustic DAC, HuBERT with its weight-normed positional conv,
//! semantic encoder and decoder, `fc`/`fc1`/`fc2`, one quantizer per codebook), by name and
//! shape, and their config makes transformers build as many quantizers as are written. The
//! expected list (`tests/data/transformers_keys_codec.txt`) was produced by transformers itself
//! (its header says which version and how, `scripts/transformers-keys.py`), so CI checks it
//! without torch.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::Device;
use higgs_codec::{write_random_checkpoint, CheckpointLayout, Codec, Preset};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Keys = BTreeMap<String, Vec<usize>>;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs-codec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// transformers' own list (its header names the version).
fn expected() -> Keys {
    higgs_testkit::transformers_keys(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transformers_keys_codec.txt"),
    )
}

#[test]
fn hf_layout_has_exactly_the_transformers_tensors() {
    let dir = scratch("tf-keys");
    write_random_checkpoint(&dir, Preset::Tiny, CheckpointLayout::Hf, 3).unwrap();
    let ours: Keys = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec()))
        .collect();
    let theirs = expected();
    higgs_testkit::assert_same_tensors(&ours, &theirs);

    // transformers builds `1000 · target_bandwidths[-1] // (frame_rate · ceil(log2 codebook_size))`
    // quantizers (HiggsAudioV2TokenizerConfig.num_quantizers); the config must ask for the ones
    // written, and we load that many codebooks.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let last = cfg["target_bandwidths"]
        .as_array()
        .and_then(|b| b.last())
        .and_then(|b| b.as_f64())
        .unwrap();
    let bins = cfg["codebook_size"].as_u64().unwrap() as f64;
    let hop: u64 = cfg["acoustic_model_config"]["downsampling_ratios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .product();
    let frame_rate = (24000f64 / hop as f64).ceil();
    let n_q = (1000.0 * last / (frame_rate * bins.log2().ceil())).floor() as usize;
    let written = theirs
        .keys()
        .filter(|k| k.starts_with("quantizer.quantizers.") && k.ends_with(".codebook.embed"))
        .count();
    assert_eq!(n_q, written);
    let codec = Codec::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(codec.num_codebooks(), n_q);
    std::fs::remove_dir_all(&dir).unwrap();
}
