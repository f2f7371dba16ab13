//! `--layout hf` random checkpoints hold exactly the tensors transformers'
//! `HiggsAudioV2ForConditionalGeneration` has, by name and shape. The expected list
//! (`tests/data/transformers_keys_llm.txt`) was produced by transformers itself (its header says
//! which version and how, `scripts/transformers-keys.py`), so CI checks it without torch.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use higgs_model::random::{Preset, RandomCheckpoint};
use higgs_model::CheckpointLayout;
use std::collections::BTreeMap;
use std::path::Path;

type Keys = BTreeMap<String, Vec<usize>>;

/// transformers' own list (its header names the version).
fn expected() -> Keys {
    higgs_testkit::transformers_keys(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transformers_keys_llm.txt"),
    )
}

/// Names and shapes of every tensor our writer put in `dir` (safetensors headers only).
fn written(dir: &Path) -> Keys {
    let files = higgs_model::WeightFiles::open(dir).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let keys: Keys = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    assert_eq!(files.names().count(), keys.len());
    keys
}

#[test]
fn hf_layout_without_text_head_has_exactly_the_transformers_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut ck = RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Hf);
    ck.text_head = false;
    ck.write(dir.path()).unwrap();
    higgs_testkit::assert_same_tensors(&written(dir.path()), &expected());
}

#[test]
fn hf_layout_with_text_head_adds_only_the_head_transformers_ignores() {
    let dir = tempfile::tempdir().unwrap();
    RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Hf)
        .write(dir.path())
        .unwrap();
    let mut ours = written(dir.path());
    let head = ours.remove("text_lm_head.weight").unwrap();
    let theirs = expected();
    // Same width and vocabulary as transformers' own embedding (`use_text_head=True` shape).
    assert_eq!(head, theirs["model.embed_tokens.weight"]);
    assert_eq!(ours, theirs);
}
