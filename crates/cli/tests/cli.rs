//! End-to-end CLI runs on a freshly generated tiny random checkpoint: make-checkpoint, synth
//! (plain, voice clone with chunking) and codec encode/decode. Random weights: the audio is noise,
//! but its format and length are checked.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_higgs-serve"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run higgs-serve");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "command failed: {cmd:?}\n{stderr}");
    stderr
}

fn make_checkpoint(dir: &Path) {
    run(bin()
        .args([
            "dev",
            "make-checkpoint",
            "--preset",
            "tiny",
            "--layout",
            "legacy",
            "--out",
        ])
        .arg(dir));
}

/// "(... N frames ...)" from synth's summary line.
fn frames_in(report: &str) -> usize {
    // The summary is the last line; progress lines before it also count frames.
    let i = report.rfind(" frames").expect("frames in report");
    report[..i]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn audio_info(path: &Path) -> (f64, u32, usize) {
    let a = higgs_audio_io::decode_file(path, &Default::default()).unwrap();
    (a.duration_seconds(), a.sample_rate, a.source_channels)
}

fn synth_base(c: &mut Command, ck: &Path) {
    c.args(["synth", "--model"])
        .arg(ck.join("model"))
        .arg("--codec")
        .arg(ck.join("codec"))
        .args(["--device", "cpu", "--force-audio"]);
}

#[test]
fn make_checkpoint_writes_a_loadable_model_codec_and_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    make_checkpoint(tmp.path());
    let model = tmp.path().join("model");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        assert!(model.join(f).exists(), "{f}");
    }
    let tok = higgs_text::TextTokenizer::from_model_dir(&model).unwrap();
    let cfg = higgs_model::HiggsConfig::from_file(&model.join("config.json")).unwrap();
    higgs_engine::check_tokenizer_matches(&cfg, &tok).unwrap();
    assert_eq!(tok.special().audio_out_bos, 128013);
    assert_eq!(tok.encode("<|AUDIO_OUT|>").unwrap(), vec![128016]);
    higgs_codec::Codec::load(&tmp.path().join("codec"), &candle_core::Device::Cpu).unwrap();
}

#[test]
fn synth_writes_a_wav_whose_duration_matches_the_generated_frames() {
    let tmp = tempfile::tempdir().unwrap();
    make_checkpoint(tmp.path());
    let synth = |out: &Path| {
        let mut c = bin();
        synth_base(&mut c, tmp.path());
        run(c
            .args([
                "--text",
                "Hello there, this is a short test.",
                "--max-new-tokens",
                "60",
            ])
            .args(["--seed", "7", "--out"])
            .arg(out))
    };
    let out = tmp.path().join("out.wav");
    let report = synth(&out);
    let frames = frames_in(&report);
    assert!(frames > 0, "{report}");
    let (secs, rate, ch) = audio_info(&out);
    assert_eq!((rate, ch), (24000, 1));
    assert!(
        (secs - frames as f64 * 0.04).abs() < 1e-9,
        "{secs} s for {frames} frames"
    );
    // Same seed, same build: same audio.
    let again = tmp.path().join("again.wav");
    synth(&again);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn synth_clones_voices_over_speaker_chunks_and_reports_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    make_checkpoint(tmp.path());
    let voices = tmp.path().join("voices");
    std::fs::create_dir_all(&voices).unwrap();
    let shared = higgs_testkit::fixtures_root().join("../voices");
    for n in ["belinda", "en_man"] {
        for ext in ["wav", "txt"] {
            std::fs::copy(
                shared.join(format!("{n}.{ext}")),
                voices.join(format!("{n}.{ext}")),
            )
            .unwrap();
        }
    }
    let base = |c: &mut Command| {
        synth_base(c, tmp.path());
        c.arg("--voices")
            .arg(&voices)
            .args(["--max-new-tokens", "40", "--seed", "1"]);
    };
    let out = tmp.path().join("dialogue.flac");
    let mut c = bin();
    base(&mut c);
    let report = run(c
        .args(["--voice", "belinda,en_man", "--chunk-method", "speaker"])
        .args([
            "--text",
            "[SPEAKER0] Hello there.\n[SPEAKER1] Hi, how are you?",
            "--out",
        ])
        .arg(&out));
    assert!(report.contains("2 chunk(s)"), "{report}");
    // Off a terminal, progress is a plain line per chunk.
    assert!(report.contains("synth: chunk 2/2"), "{report}");
    let (secs, _, _) = audio_info(&out);
    assert!((secs - frames_in(&report) as f64 * 0.04).abs() < 1e-9);
    assert!(
        voices.join("belinda.codes").exists(),
        "reference codes cached beside the audio"
    );

    for (voice, expect) in [
        ("nobody", "belinda"),
        ("../../etc/passwd", "invalid voice name"),
    ] {
        let mut c = bin();
        base(&mut c);
        let o = c
            .args(["--voice", voice, "--text", "x", "--out"])
            .arg(tmp.path().join("x.wav"))
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{voice}: {err}");
    }
}

/// A text longer than --max-seq-len allows in one piece is split by the engine and synth says so.
#[test]
fn synth_splits_a_text_too_long_for_one_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    make_checkpoint(tmp.path());
    let out = tmp.path().join("long.wav");
    let mut c = bin();
    synth_base(&mut c, tmp.path());
    // synth's default scene prompt alone is ~120 positions.
    let text = "the quick brown fox jumps over the lazy dog ".repeat(16);
    let report = run(c
        .args([
            "--max-seq-len",
            "256",
            "--max-new-tokens",
            "30",
            "--seed",
            "1",
        ])
        .args(["--text", &text, "--out"])
        .arg(&out));
    assert!(
        report.contains("did not fit --max-seq-len in one piece"),
        "{report}"
    );
    let (secs, _, _) = audio_info(&out);
    assert!(
        (secs - frames_in(&report) as f64 * 0.04).abs() < 1e-9,
        "{report}"
    );
}

#[test]
fn codec_encode_decode_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let codec = higgs_testkit::fixture("codec");
    let voice = higgs_testkit::fixtures_root().join("../voices/en_woman.wav");
    let codes = tmp.path().join("v.codes");
    run(bin()
        .args(["codec", "encode"])
        .arg(&voice)
        .arg("--out")
        .arg(&codes)
        .arg("--codec")
        .arg(&codec)
        .args(["--device", "cpu"]));
    let f = higgs_codec::read_codes(&codes).unwrap();
    let wav = tmp.path().join("v.wav");
    run(bin()
        .args(["codec", "decode"])
        .arg(&codes)
        .arg("--out")
        .arg(&wav)
        .arg("--codec")
        .arg(&codec)
        .args(["--device", "cpu"]));
    let (secs, rate, _) = audio_info(&wav);
    assert_eq!(rate, 24000);
    assert!((secs - f.n_frames as f64 * 0.04).abs() < 1e-9);
}

#[test]
fn bench_codec_reports_each_batch_and_a_profile_that_covers_the_decoder() {
    let codec = higgs_testkit::fixture("codec");
    let out = bin()
        .args(["dev", "bench-codec", "--codec"])
        .arg(&codec)
        .args(["--device", "cpu", "--batch", "1,2", "--new-frames", "4"])
        .args(["--context", "3", "--runs", "1", "--profile", "--json"])
        .output()
        .unwrap();
    // `run` checks success but returns stderr; this command reports on stdout.
    assert!(out.status.success(), "{:?}", out.status);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (l, b) in lines.iter().zip([1, 2]) {
        assert_eq!(l["batch"], b);
        assert_eq!(l["window_frames"], 3 + 4 + 3);
        let ms = l["decode_ms"].as_f64().unwrap();
        let rate = l["audio_s_per_s"].as_f64().unwrap();
        // audio-s/s counts only the new frames (40 ms each) of every window.
        let expected = b as f64 * 4.0 * 0.04 / (ms / 1e3);
        assert!((rate - expected).abs() <= 1e-6 * expected, "{l}");
        let profile = l["profile_ms"].as_object().unwrap();
        for op in [
            "quantizer_fc_post2",
            "snake",
            "conv_transpose",
            "dilated_conv_k7",
            "conv_out",
        ] {
            assert!(
                profile[op]["calls"].as_u64().unwrap() >= 1,
                "{op} missing: {l}"
            );
        }
    }
    // A bad batch list is refused with what to type instead.
    let out = bin()
        .args(["dev", "bench-codec", "--codec"])
        .arg(&codec)
        .args(["--device", "cpu", "--batch", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive integers"));
    // Layer-wise streaming steps: no context frames, one line per batch.
    let out = bin()
        .args(["dev", "bench-codec", "--codec"])
        .arg(&codec)
        .args(["--device", "cpu", "--batch", "2", "--new-frames", "4"])
        .args(["--runs", "1", "--layer-streaming", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let l: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(l["layer_streaming"], true);
    assert_eq!(l["window_frames"], 4);
    assert!(l["decode_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn serve_without_weights_asks_first_and_downloads_only_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    // A closed port stands in for an unreachable hub.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = |extra: &[&str]| {
        bin()
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--download-dir",
            ])
            .arg(tmp.path().join("dl"))
            .args(extra)
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("HF_HOME", tmp.path().join("hf"))
            .env_remove("MODEL_PATH")
            .env_remove("AUDIO_TOKENIZER_PATH")
            .env_remove("HIGGS_DOWNLOAD")
            .env_remove("HIGGS_NO_DOWNLOAD")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // No terminal to ask on: nothing is downloaded, the error says what to run.
    let out = serve(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("higgs-serve download --out"), "{err}");
    assert!(err.contains("--download"), "{err}");
    assert!(err.contains("serve --demo"), "{err}");
    assert!(!err.contains("downloading the weights into"), "{err}");
    assert!(!tmp.path().join("dl").exists(), "nothing may be written");
    // --download: it tries, and says how to fix the failure.
    let out = serve(&["--download"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("downloading the weights into"), "{err}");
    assert!(
        err.contains("downloading them failed") && err.contains("higgs-serve download --out"),
        "{err}"
    );
    let out = serve(&["--no-download"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serve --demo"), "{err}");
}

#[test]
fn a_busy_port_fails_at_once_and_names_the_address() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    // --demo would load a model: the port must be refused before that, with the address named.
    let out = bin()
        .args(["serve", "--demo", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("another process"), "{err}");
    assert!(!err.contains("DEMO MODE"), "checked before loading: {err}");
    let out = bin()
        .args(["serve", "--demo", "--host", "localhost:1", "--port", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an IP address or a name"), "{err}");
}

#[test]
fn demo_checkpoint_is_cached_and_nothing_is_left_in_tmp() {
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run_one = || {
        bin()
            .args(["runpod", "--demo", "--device", "cpu", "--test-input"])
            .arg(r#"{"input": {"transcript": "Hi.", "seed": 1}}"#)
            .env("XDG_CACHE_HOME", cache.path())
            .env("TMPDIR", tmp.path())
            .env_remove("RUNPOD_WEBHOOK_GET_JOB")
            .output()
            .unwrap()
    };
    let out = run_one();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = std::fs::read_dir(cache.path().join("higgs-serve"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(demo.len(), 1, "one cached demo checkpoint: {demo:?}");
    let config = demo[0].join("model/config.json");
    let written = std::fs::metadata(&config).unwrap().modified().unwrap();
    let out = run_one();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&config).unwrap().modified().unwrap(),
        written,
        "the second start reuses the checkpoint"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// The GPU suite's HTTP soak (`bench --url`) against a `--demo` server with the shared voices:
/// speech PCM/MP3 and chat SSE, mixed lengths, a library voice, client cancellations, no
/// `ignore_eos`; every stream that started must end whole (0 failed) and none is refused.
#[test]
fn http_soak_of_a_demo_server_has_no_failed_streams() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let voices = higgs_testkit::workspace_root().join("voices");
    let mut server = bin()
        .args(["serve", "--demo", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--voices")
        .arg(&voices)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let ready = (0..240).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        ureq::get(&format!("{url}/health")).call().is_ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("soak.json");
    let out = ready.then(|| {
        bin()
            .args([
                "bench",
                "--url",
                &url,
                "--voice",
                "belinda",
                "--concurrency",
                "4",
            ])
            .args(["--requests", "9", "--frames", "30", "--json"])
            .arg(&json)
            .output()
            .unwrap()
    });
    let _ = server.kill();
    let _ = server.wait();
    let out = out.expect("the demo server never became healthy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let level = &doc["levels"][0];
    assert_eq!(level["requests"], 9, "{level}");
    assert_eq!(level["failed_streams"], 0, "{level}");
    assert_eq!(level["refused_by_status"], serde_json::json!({}), "{level}");
    for kind in ["speech_pcm", "speech_mp3", "chat_sse"] {
        assert_eq!(level[kind], 3, "{level}");
    }
    assert_eq!(
        level["cancelled_by_client"], 1,
        "request 7 hangs up early: {level}"
    );
    assert!(level["audio_s_total"].as_f64().unwrap() > 0.0, "{level}");
}

/// `bench --mix` runs the soak's workload in-process (reference pipeline, library voice, EOS,
/// mixed lengths, a client cancellation): every request ends, none fails.
#[test]
fn in_process_mix_bench_runs_the_soak_workload() {
    let tmp = tempfile::tempdir().unwrap();
    make_checkpoint(tmp.path());
    let json = tmp.path().join("mix.json");
    let out = bin()
        .args(["bench", "--model"])
        .arg(tmp.path().join("model"))
        .arg("--codec")
        .arg(tmp.path().join("codec"))
        .arg("--voices")
        .arg(higgs_testkit::workspace_root().join("voices"))
        .args(["--device", "cpu", "--mix", "--voice", "belinda"])
        .args([
            "--concurrency",
            "3",
            "--requests",
            "8",
            "--frames",
            "20",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let level = &doc["levels"][0];
    assert_eq!(level["requests"], 8, "{level}");
    assert_eq!(level["failed"], 0, "{level}");
    assert_eq!(
        level["cancelled_by_client"], 1,
        "request 7 hangs up early: {level}"
    );
    assert!(level["audio_s_total"].as_f64().unwrap() > 0.0, "{level}");
}

/// Starts `serve --demo` on a free port with stderr in `log`; returns the child and its URL once
/// `/health` answers (None if it never did within 2 minutes).
fn demo_server(log: &Path, extra: &[&str]) -> (std::process::Child, Option<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args(["serve", "--demo", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let ready = (0..240).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        ureq::get(&format!("{url}/health")).call().is_ok()
    });
    (child, ready.then_some(url))
}

#[test]
fn demo_server_logs_an_access_line_per_request_and_exports_described_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let voices = higgs_testkit::workspace_root().join("voices");
    let (mut server, url) = demo_server(&log, &["--voices", voices.to_str().unwrap()]);
    let result = url.map(|url| {
        let speech = ureq::post(&format!("{url}/v1/audio/speech"))
            .set("content-type", "application/json")
            .send_string(
                &serde_json::json!({"model": "tts-1", "input": "Hi there.", "voice": "belinda", "response_format": "wav"})
                    .to_string(),
            );
        let missing = ureq::delete(&format!("{url}/v1/audio/voices/nobody-here")).call();
        // The engine counts the request's end just after its last byte went out: poll briefly.
        let mut metrics = String::new();
        for _ in 0..50 {
            metrics = ureq::get(&format!("{url}/metrics"))
                .call()
                .unwrap()
                .into_string()
                .unwrap();
            if metrics.contains("higgs_requests_total{") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        (speech.map(|r| {
            // Read the whole stream, as a client would: the line is written when it ends.
            let status = r.status();
            let mut audio = Vec::new();
            let _ = std::io::Read::read_to_end(&mut r.into_reader(), &mut audio);
            status
        }).map_err(|e| e.to_string()), missing.err().map(|e| e.to_string()), metrics)
    });
    let _ = server.kill();
    let _ = server.wait();
    let (speech, _missing, metrics) = result.expect("the demo server never became healthy");
    assert_eq!(
        speech,
        Ok(200),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI colours in a non-terminal log:\n{log}"
    );
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("higgs_server::access"))
        .collect();
    let speech_line = access
        .iter()
        .find(|l| l.contains("route=/v1/audio/speech"))
        .unwrap_or_else(|| panic!("no access line for the speech request:\n{log}"));
    for field in [
        "request_id=",
        "status=200",
        "latency_ms=",
        "audio_s=",
        "voice=belinda",
    ] {
        assert!(
            speech_line.contains(field),
            "{field} missing: {speech_line}"
        );
    }
    assert!(
        !speech_line.contains("audio_s=0.00"),
        "no audio counted: {speech_line}"
    );
    assert!(
        access.iter().any(|l| l.contains("status=404")),
        "the 404 has its line:\n{log}"
    );
    for family in [
        "# HELP higgs_http_requests_total",
        "# TYPE higgs_http_requests_total counter",
        "# TYPE higgs_http_request_duration_seconds histogram",
        "# HELP higgs_requests_total",
        "# TYPE higgs_time_to_first_audio_seconds histogram",
        "# TYPE higgs_real_time_factor histogram",
        "# TYPE higgs_kv_cache_bytes gauge",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"higgs_http_requests_total{route="/v1/audio/speech",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"higgs_http_request_duration_seconds_bucket{route="/v1/audio/speech",le="#),
        "{metrics}"
    );
    let kv: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"higgs_kv_cache_bytes{engine="0"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no higgs_kv_cache_bytes sample:\n{metrics}"));
    assert!(kv > 0.0, "{kv}");
    // No GPU here: no GPU memory samples (the gauge is sampled only where there is one).
    assert!(
        !metrics.contains("\nhiggs_gpu_memory_used_bytes"),
        "{metrics}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let (mut server, url) = demo_server(&log, &["--log-format", "json"]);
    let ok = url.map(|url| {
        ureq::get(&format!("{url}/v1/models"))
            .set("x-request-id", "trace-me-123")
            .call()
            .is_ok()
    });
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(ok, Some(true), "the demo server never became healthy");
    let log = std::fs::read_to_string(&log).unwrap();
    let mut found = false;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["route"] == "/v1/models" {
            assert_eq!(v["fields"]["request_id"], "trace-me-123", "{v}");
            assert_eq!(v["fields"]["status"], 200, "{v}");
            found = true;
        }
    }
    assert!(found, "no JSON access line for /v1/models:\n{log}");
}

/// `serve --devices cpu,cpu`: two engines behind one server. Concurrent requests reach both,
/// `/health` lists each engine and the totals, `/metrics` labels each engine's series.
#[test]
fn two_cpu_engines_behind_one_demo_server() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let voices = higgs_testkit::workspace_root().join("voices");
    let (mut server, url) = demo_server(
        &log,
        &[
            "--devices",
            "cpu,cpu",
            "--max-running",
            "2",
            "--voices",
            voices.to_str().unwrap(),
        ],
    );
    let result = url.map(|url| {
        let speech = |i: usize| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = serde_json::json!({"model": "tts-1", "input": format!("Request {i} here."),
                    "voice": "belinda", "response_format": "wav", "max_new_tokens": 30});
                ureq::post(&format!("{url}/v1/audio/speech"))
                    .set("content-type", "application/json")
                    .send_string(&body.to_string())
                    .map(|r| {
                        let mut audio = Vec::new();
                        let _ = std::io::Read::read_to_end(&mut r.into_reader(), &mut audio);
                        audio.len()
                    })
                    .map_err(|e| e.to_string())
            })
        };
        let sizes: Vec<Result<usize, String>> = (0..4)
            .map(speech)
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        // The engines count a request's end just after its last byte went out: poll briefly.
        let mut health = serde_json::Value::Null;
        for _ in 0..50 {
            let body = ureq::get(&format!("{url}/health")).call().unwrap();
            health = serde_json::from_str(&body.into_string().unwrap()).unwrap();
            if health["queue"]["requests_finished"] == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let metrics = ureq::get(&format!("{url}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        (sizes, health, metrics)
    });
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let (sizes, h, metrics) = result.unwrap_or_else(|| panic!("never healthy:\n{log}"));
    for s in &sizes {
        assert!(s.as_ref().is_ok_and(|n| *n > 44), "{sizes:?}\n{log}");
    }
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["device"], "cpu,cpu", "{h}");
    assert_eq!(h["queue"]["slots"], 4, "{h}");
    assert_eq!(h["queue"]["requests_finished"], 4, "{h}");
    let engines = h["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2, "{h}");
    for (i, e) in engines.iter().enumerate() {
        assert_eq!(e["engine"], i, "{h}");
        assert_eq!(e["status"], "serving", "{h}");
        assert_eq!(e["queue"]["slots"], 2, "{h}");
        assert!(
            e["queue"]["requests_finished"].as_u64().unwrap() > 0,
            "engine {i} got no request: {h}"
        );
        assert!(
            metrics.contains(&format!("higgs_kv_cache_bytes{{engine=\"{i}\"}} ")),
            "{metrics}"
        );
    }
    for line in [
        "higgs_engines{state=\"serving\"} 2",
        "higgs_engines{state=\"failed\"} 0",
        "higgs_pool_slots 4",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        log.contains("2 engines behind one admission front (cpu,cpu)"),
        "{log}"
    );
}

#[test]
fn devices_that_this_build_cannot_run_fail_at_once() {
    let out = bin()
        .args(["serve", "--demo", "--host", "127.0.0.1", "--port", "0"])
        .args(["--devices", "cuda:0,cuda:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cuda:0") && err.contains("without CUDA support"),
        "{err}"
    );
    let out = bin()
        .args(["serve", "--demo", "--port", "0", "--devices", "cpu,cuda:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be mixed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bench --devices cpu,cpu`: the in-process bench over a pool of two engines spreads the requests
/// over both and reports the split (what the multi-GPU scaling runs read).
#[test]
fn in_process_bench_over_two_engines_reports_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    make_checkpoint(tmp.path());
    let json = tmp.path().join("pool.json");
    let out = bin()
        .args(["bench", "--model"])
        .arg(tmp.path().join("model"))
        .arg("--codec")
        .arg(tmp.path().join("codec"))
        .args([
            "--devices",
            "cpu,cpu",
            "--concurrency",
            "4",
            "--requests",
            "8",
        ])
        .args(["--frames", "20", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["engines"], 2, "{doc}");
    assert_eq!(doc["device"], "cpu,cpu", "{doc}");
    let level = &doc["levels"][0];
    assert_eq!(level["failed"], 0, "{level}");
    let split: Vec<u64> = level["per_engine_finished"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(split.iter().sum::<u64>(), 8, "{level}");
    assert!(split.iter().all(|&n| n >= 2), "unbalanced: {split:?}");
}
