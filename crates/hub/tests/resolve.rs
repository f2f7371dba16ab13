//! `find_model_dirs`: explicit paths, volume layout, Hugging Face cache, and the message when
//! nothing complete is found.

#![allow(clippy::unwrap_used)]

use higgs_hub::{find_model_dirs, ModelSearch};
use std::path::{Path, PathBuf};

fn touch(p: &Path, body: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn fake_model(dir: &Path) {
    touch(&dir.join("config.json"), "{}");
    touch(&dir.join("tokenizer.json"), "{}");
    touch(&dir.join("model.safetensors"), "x");
}

fn fake_codec(dir: &Path) {
    touch(&dir.join("config.json"), "{}");
    touch(&dir.join("model.pth"), "x");
}

fn search(roots: Vec<PathBuf>, cache: Option<PathBuf>) -> ModelSearch {
    ModelSearch {
        volume_roots: roots,
        hf_cache: cache,
        ..ModelSearch::default()
    }
}

#[test]
fn volume_layout_is_found() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    let vol = t.path().join("higgs_audio");
    fake_model(&vol.join("model"));
    fake_codec(&vol.join("codec"));
    let d = find_model_dirs(&search(vec![empty, vol.clone()], None)).unwrap();
    assert_eq!(d.model, vol.join("model"));
    assert_eq!(d.codec, vol.join("codec"));
}

#[test]
fn explicit_paths_win_and_parts_resolve_independently() {
    let t = tempfile::tempdir().unwrap();
    let vol = t.path().join("vol");
    fake_model(&vol.join("model"));
    fake_codec(&vol.join("codec"));
    let mine = t.path().join("my-model");
    fake_model(&mine);
    let mut s = search(vec![vol.clone()], None);
    s.model_path = Some(mine.clone());
    let d = find_model_dirs(&s).unwrap();
    assert_eq!(d.model, mine);
    assert_eq!(d.codec, vol.join("codec"));
}

#[test]
fn sharded_model_needs_every_shard() {
    let t = tempfile::tempdir().unwrap();
    let vol = t.path().join("vol");
    let m = vol.join("model");
    touch(&m.join("config.json"), "{}");
    touch(&m.join("tokenizer.json"), "{}");
    touch(
        &m.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    );
    touch(&m.join("model-00001-of-00002.safetensors"), "x");
    touch(&m.join("model-00002-of-00002.safetensors.part"), "x");
    fake_codec(&vol.join("codec"));
    let e = find_model_dirs(&search(vec![vol.clone()], None)).unwrap_err();
    let msg = e.to_string();
    assert!(e.missing_model && !e.missing_codec);
    assert!(
        msg.contains("model-00002-of-00002.safetensors is only partly downloaded"),
        "{msg}"
    );
    touch(&m.join("model-00002-of-00002.safetensors"), "x");
    assert_eq!(
        find_model_dirs(&search(vec![vol.clone()], None))
            .unwrap()
            .model,
        m
    );
}

#[test]
fn hf_cache_prefers_refs_main() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("hub");
    let base = cache.join("models--bosonai--higgs-audio-v2-generation-3B-base");
    fake_model(&base.join("snapshots/aaaa"));
    fake_model(&base.join("snapshots/bbbb"));
    touch(&base.join("refs/main"), "aaaa\n");
    fake_codec(&cache.join("models--bosonai--higgs-audio-v2-tokenizer/snapshots/cccc"));
    let d = find_model_dirs(&search(vec![t.path().join("novol")], Some(cache))).unwrap();
    assert!(d.model.ends_with("snapshots/aaaa"), "{}", d.model.display());
    assert!(d.codec.ends_with("snapshots/cccc"));
}

#[test]
fn nothing_found_says_what_to_run() {
    let t = tempfile::tempdir().unwrap();
    let vol = t.path().join("higgs_audio");
    let mut s = search(vec![vol.clone()], Some(t.path().join("hub")));
    s.model_path = Some(t.path().join("nowhere"));
    let e = find_model_dirs(&s).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("model and audio tokenizer not found"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "run: higgs-serve download --out {}",
            vol.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("nowhere (no such directory)"), "{msg}");
    assert!(
        msg.contains("models--bosonai--higgs-audio-v2-tokenizer"),
        "{msg}"
    );
}
