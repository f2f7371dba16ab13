//! The real `higgs-serve` process as a RunPod worker against the fake platform: started the way
//! RunPod starts the image (no command, `RUNPOD_*` environment), SIGTERM in the middle of a job
//! (the job still gets its one result, the process exits 0), and missing weights (an "unhealthy"
//! report, exit 1, no job taken).
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::process::{Command, Stdio};
use std::time::Duration;

use higgs_worker::fake_platform::FakePlatform;
use serde_json::json;

const KEY: &str = "process-key";

fn worker(p: &FakePlatform) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_higgs-serve"));
    for (k, v) in p.env("pod-7") {
        c.env(k, v);
    }
    c.env("RUNPOD_PING_INTERVAL", "200")
        .env("HIGGS_DEVICE", "cpu")
        .env("HIGGS_MAX_SEQ_LEN", "4096")
        .env_remove("MODEL_PATH")
        .env_remove("AUDIO_TOKENIZER_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

async fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_job_drains_it_and_exits_cleanly() {
    let p = FakePlatform::start(KEY, Duration::from_millis(300))
        .await
        .unwrap();
    let words = (0..120)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let id = p.push_job(json!({"transcript": words, "chunk_method": "word", "chunk_max_word_num": 4,
        "max_new_tokens": 40, "generation_chunk_buffer_size": 2, "temperature": 1.0, "seed": 11, "stream": true, "output_format": "pcm"}));
    // A fixed seed: the random demo model sometimes samples the audio end at once, which (rightly)
    // fails a chunk; unseeded, that made this test flaky.
    // No command: RunPod runs the image's entrypoint with its environment.
    let mut child = worker(&p).env("HIGGS_DEMO", "true").spawn().unwrap();
    assert!(
        p.wait_for(Duration::from_secs(120), |p| !p.stream(&id).is_empty())
            .await,
        "the job never started streaming"
    );
    let ping_id = id.clone();
    assert!(
        p.wait_for(Duration::from_secs(10), move |p| p
            .pings()
            .iter()
            .any(|ids| ids == std::slice::from_ref(&ping_id)))
            .await,
        "no heartbeat carried the running job: {:?}",
        p.pings()
    );
    assert!(
        p.final_result(&id).is_none(),
        "the job must still be running at SIGTERM"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child, Duration::from_secs(120)).await;
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status:?}\n{err}");
    let f = p.final_result(&id).expect("the drained job has its result");
    assert_eq!(f.duplicates_different, 0);
    assert_eq!(f.body["output"]["success"], true, "{}", f.body);
    assert!(f.is_stream);
    assert_eq!(f.body["output"]["streamed_chunks"], p.stream(&id).len());
    // Nothing was taken after the signal.
    assert_eq!(p.finals().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_weights_report_unhealthy_and_exit_1() {
    let p = FakePlatform::start(KEY, Duration::from_millis(300))
        .await
        .unwrap();
    let id = p.push_job(json!({"transcript": "never run"}));
    let empty = tempfile::tempdir().unwrap();
    let mut child = worker(&p)
        .arg("runpod")
        .env("MODEL_PATH", empty.path().join("model"))
        .env("AUDIO_TOKENIZER_PATH", empty.path().join("codec"))
        .env("HF_HOME", empty.path())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60)).await;
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("higgs-serve download"), "{err}");
    let q = p.ping_queries();
    let report = q
        .iter()
        .find(|q| q.get("status").map(String::as_str) == Some("unhealthy"))
        .unwrap_or_else(|| panic!("no unhealthy report: {q:?}"));
    assert_eq!(report["check"], "model_files");
    assert!(!report["reason"].is_empty() && report["reason"].chars().count() <= 256);
    assert_eq!(p.queued(), 1, "a worker that cannot run must not take jobs");
    assert!(p.final_result(&id).is_none());
}

#[test]
fn blank_path_variables_mean_unset() {
    // RunPod's console and Hub send empty inputs as empty strings.
    let out = Command::new(env!("CARGO_BIN_EXE_higgs-serve"))
        .args(["runpod", "--demo", "--device", "cpu", "--test-input"])
        .arg(r#"{"input": {"transcript": "Blank variables.", "max_new_tokens": 30, "temperature": 0}}"#)
        .env("MODEL_PATH", "")
        .env("AUDIO_TOKENIZER_PATH", "")
        .env("TOKENIZER_PATH", "")
        .env("VOICE_PROMPTS_PATH", "")
        .env("HIGGS_KV_CACHE_GB", "")
        .env_remove("RUNPOD_WEBHOOK_GET_JOB")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["output"]["success"], true);
}
