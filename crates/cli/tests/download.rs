//! `higgs-serve download` against the fake hub of the hub crate's tests (two local ports, LFS
//! redirects to a CDN origin): what a user sees in a log (stderr not a terminal).
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

#[path = "../../hub/tests/common/mod.rs"]
mod fake_hub;

use std::process::Command;

#[test]
fn download_logs_each_file_with_its_size_and_rate_when_not_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = Command::new(env!("CARGO_BIN_EXE_higgs-serve"))
        .args([
            "dev",
            "make-checkpoint",
            "--preset",
            "tiny",
            "--layout",
            "legacy",
            "--out",
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hub = fake_hub::FakeHub::start();
    hub.add_repo_from_dir("test/model", &src.join("model"), false);
    hub.add_repo_from_dir("test/codec", &src.join("codec"), false);
    let dest = tmp.path().join("weights");
    let out = Command::new(env!("CARGO_BIN_EXE_higgs-serve"))
        .args(["download", "--out"])
        .arg(&dest)
        .args(["--endpoint", &hub.endpoint])
        .args(["--model-repo", "test/model", "--codec-repo", "test/codec"])
        .env_remove("HF_TOKEN")
        .env("HF_HOME", tmp.path().join("hf"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // No bar drawing (no terminal), no colours; one plain line per file with what was fetched.
    assert!(!err.contains('\u{1b}'), "{err}");
    let weights = err
        .lines()
        .find(|l| l.contains("model.safetensors: downloaded (verified)"))
        .unwrap_or_else(|| panic!("no line for the model weights:\n{err}"));
    assert!(
        weights.contains("MiB in") && weights.contains("MiB/s"),
        "{weights}"
    );
    let size = std::fs::metadata(src.join("model/model.safetensors"))
        .unwrap()
        .len();
    let shown = format!("{:.1} MiB in", size as f64 / (1u64 << 20) as f64);
    assert!(weights.contains(&shown), "{shown} not in {weights}");
    assert!(err.contains("fetching"), "{err}");
    // A second run finds everything complete: no bytes fetched, so no rate.
    let again = Command::new(env!("CARGO_BIN_EXE_higgs-serve"))
        .args(["download", "--out"])
        .arg(&dest)
        .args(["--endpoint", &hub.endpoint])
        .args(["--model-repo", "test/model", "--codec-repo", "test/codec"])
        .env_remove("HF_TOKEN")
        .env("HF_HOME", tmp.path().join("hf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("model.safetensors: already complete"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(!line.contains("MiB/s"), "{line}");
}
