//! `download` against a local fake hub serving a tiny random checkpoint.

#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeHub, Fault};
use higgs_hub::download::part_path;
use higgs_hub::{
    find_model_dirs, DownloadOptions, HubClient, HubConfig, HubError, ModelSearch, NoProgress,
    Outcome, RepoKind, RepoReport,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MODEL: &str = "bosonai/higgs-audio-v2-generation-3B-base";
const CODEC: &str = "bosonai/higgs-audio-v2-tokenizer";

struct Fixture {
    hub: FakeHub,
    _src: tempfile::TempDir,
    model_src: PathBuf,
    codec_src: PathBuf,
}

fn write_model(dir: &Path, max_shard_bytes: Option<u64>) {
    use higgs_model::random::{Preset, RandomCheckpoint};
    let mut ck = RandomCheckpoint::new(Preset::Tiny, higgs_model::CheckpointLayout::Legacy);
    ck.max_shard_bytes = max_shard_bytes;
    ck.write(dir).unwrap();
    higgs_model::random::write_tokenizer(dir, None).unwrap();
}

fn fixture_with(max_shard_bytes: Option<u64>) -> Fixture {
    let src = tempfile::tempdir().unwrap();
    let model_src = src.path().join("model");
    let codec_src = src.path().join("codec");
    write_model(&model_src, max_shard_bytes);
    higgs_codec::write_random_checkpoint(
        &codec_src,
        higgs_codec::Preset::Tiny,
        higgs_codec::CheckpointLayout::Legacy,
        0,
    )
    .unwrap();
    let hub = FakeHub::start();
    let mut extra = BTreeMap::new();
    extra.insert("README.md".to_string(), b"# model card\n".to_vec());
    extra.insert(
        ".gitattributes".to_string(),
        b"*.safetensors filter=lfs\n".to_vec(),
    );
    hub.add_repo_from_dir(MODEL, &model_src, false);
    hub.add_repo_from_dir(CODEC, &codec_src, false);
    {
        let mut st = hub.state.lock().unwrap();
        for (k, v) in extra {
            st.repos.get_mut(MODEL).unwrap().files.insert(k, v);
        }
    }
    Fixture {
        hub,
        _src: src,
        model_src,
        codec_src,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

fn client(f: &Fixture, token: Option<&str>) -> HubClient {
    HubClient::new(HubConfig {
        endpoint: f.hub.endpoint.clone(),
        token: token.map(String::from),
        ..HubConfig::default()
    })
    .unwrap()
}

fn opts(retries: u32) -> DownloadOptions {
    DownloadOptions {
        retries,
        backoff: Duration::from_millis(5),
    }
}

fn download_model(c: &HubClient, out: &Path, retries: u32) -> higgs_hub::Result<RepoReport> {
    c.download_repo(
        MODEL,
        "main",
        RepoKind::Model,
        &out.join("model"),
        &opts(retries),
        &mut NoProgress,
    )
}

fn download_codec(c: &HubClient, out: &Path) -> higgs_hub::Result<RepoReport> {
    c.download_repo(
        CODEC,
        "main",
        RepoKind::Codec,
        &out.join("codec"),
        &opts(2),
        &mut NoProgress,
    )
}

/// Every file of `src` is in `dst` with the same bytes.
fn assert_same_files(src: &Path, dst: &Path) {
    for e in walk(src) {
        let rel = e.strip_prefix(src).unwrap();
        let got = std::fs::read(dst.join(rel))
            .unwrap_or_else(|err| panic!("{} missing: {err}", rel.display()));
        assert!(
            got == std::fs::read(&e).unwrap(),
            "{} differs",
            rel.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn outcome<'a>(r: &'a RepoReport, file: &str) -> &'a Outcome {
    &r.files.iter().find(|f| f.file == file).unwrap().outcome
}

#[test]
fn full_download_matches_source_and_loads() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let c = client(&f, Some("hf_test"));
    let m = download_model(&c, out.path(), 0).unwrap();
    let k = download_codec(&c, out.path()).unwrap();
    assert_same_files(&f.model_src, &out.path().join("model"));
    assert_same_files(&f.codec_src, &out.path().join("codec"));
    assert!(m.files.iter().all(|r| r.outcome == Outcome::Downloaded));
    assert!(k.files.iter().any(|r| r.file == "model.pth"));
    assert!(k.files.iter().any(|r| r.file == "hubert_base/config.json"));
    // Only what is needed: no model card, no .gitattributes, no partial files left.
    assert!(!out.path().join("model/README.md").exists());
    assert!(!out.path().join("model/.gitattributes").exists());
    assert!(walk(out.path())
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".part")));
    assert_eq!(m.commit.len(), 40);
    // The token reached the hub but never the CDN.
    let log = f.hub.log();
    assert!(log
        .iter()
        .any(|l| !l.cdn && l.auth.as_deref() == Some("Bearer hf_test")));
    assert!(log.iter().any(|l| l.cdn));
    assert!(log.iter().filter(|l| l.cdn).all(|l| l.auth.is_none()));
    // Pinned to the listed commit.
    assert!(log
        .iter()
        .filter(|l| l.path.contains("/resolve/") && l.path.contains(MODEL))
        .all(|l| l.path.contains(&m.commit)));

    // A second run keeps everything and transfers no weights.
    f.hub.clear_log();
    let again = download_model(&c, out.path(), 0).unwrap();
    assert!(again
        .files
        .iter()
        .all(|r| r.outcome == Outcome::AlreadyComplete));
    assert!(!f.hub.log().iter().any(|l| l.cdn && l.method == "GET"));

    // The downloaded checkpoint loads.
    let dev = candle_core::Device::Cpu;
    higgs_model::HiggsAudioModel::load(&out.path().join("model"), candle_core::DType::F32, &dev)
        .unwrap();
    higgs_codec::Codec::load(&out.path().join("codec"), &dev).unwrap();
}

#[test]
fn sharded_model_fetches_index_and_every_shard() {
    let f = fixture_with(Some(64 * 1024));
    let out = tempfile::tempdir().unwrap();
    let r = download_model(&client(&f, None), out.path(), 0).unwrap();
    let shards = r
        .files
        .iter()
        .filter(|x| x.file.starts_with("model-0"))
        .count();
    assert!(shards > 1, "expected several shards, got {shards}");
    assert!(r
        .files
        .iter()
        .any(|x| x.file == "model.safetensors.index.json"));
    assert_same_files(&f.model_src, &out.path().join("model"));
    higgs_model::HiggsAudioModel::load(
        &out.path().join("model"),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
}

#[test]
fn interrupted_transfer_resumes_with_range() {
    let f = fixture();
    f.hub.set_fault(
        "model.safetensors",
        Fault::DropAfter {
            bytes: 1000,
            times: 1,
        },
    );
    let out = tempfile::tempdir().unwrap();
    let r = download_model(&client(&f, None), out.path(), 2).unwrap();
    assert_eq!(
        outcome(&r, "model.safetensors"),
        &Outcome::Resumed { from: 1000 }
    );
    let log = f.hub.log();
    assert!(
        log.iter()
            .any(|l| l.cdn && l.method == "GET" && l.range.as_deref() == Some("bytes=1000-")),
        "no Range request in {log:?}"
    );
    assert_same_files(&f.model_src, &out.path().join("model"));
}

#[test]
fn partial_file_from_an_earlier_run_is_resumed() {
    let f = fixture();
    f.hub.set_fault(
        "model.safetensors",
        Fault::DropAfter {
            bytes: 4096,
            times: 1,
        },
    );
    let out = tempfile::tempdir().unwrap();
    let c = client(&f, None);
    let err = download_model(&c, out.path(), 0).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    let dest = out.path().join("model/model.safetensors");
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 4096);
    assert!(!dest.exists());

    let r = download_model(&c, out.path(), 0).unwrap();
    assert_eq!(
        outcome(&r, "model.safetensors"),
        &Outcome::Resumed { from: 4096 }
    );
    assert!(!part_path(&dest).exists());
    assert_same_files(&f.model_src, &out.path().join("model"));
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model/model.safetensors");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let src = std::fs::read(f.model_src.join("model.safetensors")).unwrap();
    std::fs::write(part_path(&dest), &src[..500]).unwrap();
    f.hub.set_fault("model.safetensors", Fault::IgnoreRange);
    download_model(&client(&f, None), out.path(), 0).unwrap();
    assert_same_files(&f.model_src, &out.path().join("model"));
}

#[test]
fn corrupted_download_is_detected_and_retried() {
    let f = fixture();
    // Wrong bytes once: detected by sha256, deleted, fetched again.
    f.hub
        .set_fault("model.safetensors", Fault::Corrupt { times: 1 });
    let out = tempfile::tempdir().unwrap();
    download_model(&client(&f, None), out.path(), 1).unwrap();
    assert_same_files(&f.model_src, &out.path().join("model"));
}

#[test]
fn persistently_corrupted_download_is_reported() {
    let f = fixture();
    f.hub
        .set_fault("model.safetensors", Fault::Corrupt { times: 100 });
    let out = tempfile::tempdir().unwrap();
    let err = download_model(&client(&f, None), out.path(), 1).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sha256 mismatch"), "{msg}");
    assert!(matches!(
        err,
        HubError::RetriesExhausted { ref last, .. } if matches!(**last, HubError::Integrity { .. })
    ));
    let dest = out.path().join("model/model.safetensors");
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[test]
fn corrupted_regular_file_is_detected_by_git_blob_id() {
    let f = fixture();
    f.hub
        .set_fault("config.json", Fault::Corrupt { times: 100 });
    let out = tempfile::tempdir().unwrap();
    let err = download_model(&client(&f, None), out.path(), 0).unwrap_err();
    assert!(
        matches!(err, HubError::RetriesExhausted { ref last, .. }
            if matches!(**last, HubError::Integrity { algorithm: "git blob sha1", .. })),
        "{err}"
    );
}

#[test]
fn tampered_local_file_is_replaced() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let c = client(&f, None);
    download_model(&c, out.path(), 0).unwrap();
    let dest = out.path().join("model/model.safetensors");
    let mut bytes = std::fs::read(&dest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&dest, &bytes).unwrap();
    let r = download_model(&c, out.path(), 0).unwrap();
    match outcome(&r, "model.safetensors") {
        Outcome::Replaced { reason } => assert!(reason.contains("sha256"), "{reason}"),
        o => panic!("expected Replaced, got {o:?}"),
    }
    assert_eq!(outcome(&r, "config.json"), &Outcome::AlreadyComplete);
    assert_same_files(&f.model_src, &out.path().join("model"));
}

#[test]
fn missing_repo_and_token_errors_are_clear() {
    let f = fixture();
    f.hub.state.lock().unwrap().token = Some("hf_good".into());
    let mut private = BTreeMap::new();
    private.insert("config.json".to_string(), b"{}".to_vec());
    f.hub.add_repo("acme/private-model", private, true);
    let out = tempfile::tempdir().unwrap();
    let get = |c: &HubClient, repo: &str, rev: &str| {
        c.download_repo(
            repo,
            rev,
            RepoKind::Model,
            out.path(),
            &opts(0),
            &mut NoProgress,
        )
    };

    // Anonymous: the hub answers 401 for private and missing repositories alike.
    let anon = client(&f, None);
    let e = get(&anon, "acme/private-model", "main").unwrap_err();
    assert!(matches!(e, HubError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("HF_TOKEN"), "{e}");
    let e = get(&anon, "acme/nope", "main").unwrap_err();
    assert!(matches!(e, HubError::Unauthorized { .. }), "{e}");

    // A wrong token is called out as such.
    let bad = client(&f, Some("hf_bad"));
    let e = get(&bad, "acme/private-model", "main").unwrap_err();
    assert!(e.to_string().contains("token given was refused"), "{e}");

    // With a valid token: missing repository, missing revision, and a repo with no weights.
    let good = client(&f, Some("hf_good"));
    let e = get(&good, "acme/nope", "main").unwrap_err();
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    assert!(e.to_string().contains("--model-repo"), "{e}");
    let e = get(&good, MODEL, "v9").unwrap_err();
    assert!(matches!(e, HubError::RevisionNotFound { .. }), "{e}");
    let e = get(&good, "acme/private-model", "main").unwrap_err();
    assert!(matches!(e, HubError::NoWeights { .. }), "{e}");

    // A connection refused names the URL.
    let closed = HubClient::new(HubConfig {
        endpoint: "http://127.0.0.1:1".into(),
        ..HubConfig::default()
    })
    .unwrap();
    let e = get(&closed, MODEL, "main").unwrap_err();
    assert!(matches!(e, HubError::Transport { .. }), "{e}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

/// The real `hf-hub` client works against the fake (so the fake sends what the hub sends), and
/// `find_model_dirs` finds the cache it writes.
#[test]
fn hf_hub_client_accepts_the_fake_and_its_cache_is_found() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_endpoint(f.hub.endpoint.clone())
        .with_cache_dir(cache.path().to_path_buf())
        .with_progress(false)
        .build()
        .unwrap();
    for (repo, src, files) in [
        (
            MODEL,
            &f.model_src,
            &["config.json", "tokenizer.json", "model.safetensors"][..],
        ),
        (
            CODEC,
            &f.codec_src,
            &["config.json", "model.pth", "hubert_base/config.json"][..],
        ),
    ] {
        let r = api.model(repo.to_string());
        for file in files {
            let p = r.get(file).unwrap();
            assert_eq!(
                std::fs::read(p).unwrap(),
                std::fs::read(src.join(file)).unwrap()
            );
        }
    }
    let search = ModelSearch {
        volume_roots: vec![PathBuf::from("/nonexistent/volume")],
        hf_cache: Some(cache.path().to_path_buf()),
        ..ModelSearch::default()
    };
    let dirs = find_model_dirs(&search).unwrap();
    assert!(dirs.model.starts_with(cache.path()));
    assert!(dirs.model.to_string_lossy().contains("snapshots"));
    assert!(dirs.codec.join("model.pth").is_file());
}

#[test]
fn concurrent_downloads_into_one_directory_do_not_collide() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let c = client(&f, None);
    let results: Vec<RepoReport> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| download_model(&c, out.path(), 0).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_same_files(&f.model_src, &out.path().join("model"));
    // One did the work; the other waited and found everything complete.
    let complete = results
        .iter()
        .filter(|r| {
            r.files
                .iter()
                .all(|x| x.outcome == Outcome::AlreadyComplete)
        })
        .count();
    assert_eq!(complete, 1);
}
