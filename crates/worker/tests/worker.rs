//! The worker loop against the fake RunPod platform, over a real engine on the fixture model:
//! many jobs at once, streaming, job-stop, pings, SIGTERM drain, refresh_worker, inline limits,
//! per-request S3, and fault injection (5xx, 429, dropped connections, slow answers) — every job
//! must end with exactly one final result, partials in order.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

mod common;
#[path = "../../storage/tests/common/mod.rs"]
mod s3;
use common::{setup, setup_engines, Setup};

use std::time::Duration;

use base64::Engine as _;
use higgs_worker::fake_platform::{FakePlatform, Fault, Route};
use higgs_worker::{Backoff, ExitReason, PlatformClient, PlatformConfig, WorkerConfig};
use serde_json::{json, Value};

const KEY: &str = "rp-worker-key";

fn client(p: &FakePlatform, post_timeout: Duration) -> PlatformClient {
    let mut cfg = PlatformConfig::new(p.urls("worker-1"), Some(KEY.into()));
    cfg.long_poll = Duration::from_secs(5);
    cfg.post_timeout = post_timeout;
    cfg.rate_limited_wait = Duration::from_millis(50);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        attempts: 8,
    };
    PlatformClient::new(cfg).unwrap()
}

fn worker_cfg(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        concurrency: Some(concurrency),
        ping_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(60),
        stop_poll_min_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

fn tts(text: &str, extra: Value) -> Value {
    let mut v = json!({"transcript": text, "temperature": 0.0, "ras_win_len": 0, "max_new_tokens": 24, "seed": 1});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// Runs the worker until `done(platform)` holds, then shuts it down; returns its report.
async fn run_until(
    s: &Setup,
    p: &FakePlatform,
    client: PlatformClient,
    cfg: WorkerConfig,
    done: impl Fn(&FakePlatform) -> bool + Send + 'static,
) -> higgs_worker::WorkerReport {
    let p2 = p.clone();
    let shutdown = async move {
        assert!(
            p2.wait_for(Duration::from_secs(240), &done).await,
            "the platform never saw what the test waits for; finals so far: {:?}",
            p2.finals().keys().collect::<Vec<_>>()
        );
    };
    tokio::time::timeout(
        Duration::from_secs(300),
        higgs_worker::run(s.ctx.clone(), client, cfg, shutdown),
    )
    .await
    .expect("the worker did not stop")
}

/// Runs a worker with `concurrency` until every id has its final result.
async fn run_jobs(s: &Setup, p: &FakePlatform, concurrency: usize, ids: &[String]) {
    let want = ids.to_vec();
    run_until(
        s,
        p,
        client(p, Duration::from_secs(30)),
        worker_cfg(concurrency),
        move |p| want.iter().all(|id| p.final_result(id).is_some()),
    )
    .await;
}

fn output(p: &FakePlatform, id: &str) -> Value {
    let f = p
        .final_result(id)
        .unwrap_or_else(|| panic!("no final result for {id}"));
    assert_eq!(f.duplicates_different, 0, "{id} got conflicting results");
    assert!(
        f.body.get("error").is_none(),
        "{id} failed: {}",
        f.body["error"]
    );
    f.body["output"].clone()
}

fn error_of(p: &FakePlatform, id: &str) -> Value {
    let f = p
        .final_result(id)
        .unwrap_or_else(|| panic!("no final result for {id}"));
    assert!(f.body.get("output").is_none(), "{id}: {}", f.body);
    let e = f.body["error"].as_str().unwrap();
    serde_json::from_str(e).unwrap_or_else(|_| panic!("error is not a JSON string: {e}"))
}

fn wav_samples(b64: &str) -> usize {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let d = higgs_audio_io::decode_bytes(&bytes, &Default::default()).unwrap();
    assert_eq!(d.sample_rate, 24_000);
    d.samples.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_at_once_each_end_with_exactly_one_result() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let ids: Vec<String> = (0..10)
        .map(|i| {
            p.push_job(tts(
                &format!("Job number {i} says hello."),
                json!({"seed": i}),
            ))
        })
        .collect();
    let want = ids.clone();
    let report = run_until(
        &s,
        &p,
        client(&p, Duration::from_secs(30)),
        worker_cfg(8),
        move |p| want.iter().all(|id| p.final_result(id).is_some()),
    )
    .await;
    assert_eq!(report.reason, ExitReason::Shutdown);
    assert_eq!(report.jobs_finished, 10);
    for id in &ids {
        let o = output(&p, id);
        assert_eq!(o["success"], true);
        let n = wav_samples(o["audio_base64"].as_str().unwrap());
        assert!(n > 0);
        let dur = o["duration_seconds"].as_f64().unwrap();
        assert!((dur - n as f64 / 24_000.0).abs() < 1e-6);
        assert!(!p.final_result(id).unwrap().is_stream);
    }
    assert_eq!(p.finals().len(), 10, "results for jobs that do not exist");
    // Jobs were taken in batches and ran together in the engine.
    assert!(p.takes().iter().any(|q| q
        .get("batch_size")
        .is_some_and(|b| b.parse::<usize>().unwrap() > 1)));
    let stats = s.ctx.service.engine.stats();
    assert!(
        stats.batch_sizes.keys().any(|&b| b > 1),
        "no forward call batched several jobs: {:?}",
        stats.batch_sizes
    );
    assert_eq!(p.bad_auth(), 0, "a call went out without the raw API key");
    // Later takes say a job was in progress.
    assert!(p
        .takes()
        .iter()
        .any(|q| q.get("job_in_progress").map(String::as_str) == Some("1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_partials_arrive_in_order_and_concatenate_to_the_audio() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let id = p.push_job(tts(
        "A streamed answer, please.",
        json!({"stream": true, "output_format": "pcm", "max_new_tokens": 60}),
    ));
    run_jobs(&s, &p, 4, std::slice::from_ref(&id)).await;
    let o = output(&p, &id);
    assert!(p.final_result(&id).unwrap().is_stream);
    assert!(
        o.get("audio_base64").is_none(),
        "streamed audio is not repeated inline"
    );
    let chunks = p.stream(&id);
    assert!(!chunks.is_empty());
    assert_eq!(o["streamed_chunks"], chunks.len());
    let mut pcm = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let c = &c["output"];
        assert_eq!(c["chunk_index"], i, "out of order");
        assert_eq!(c["format"], "pcm");
        assert_eq!(c["sample_rate"], 24_000);
        pcm.extend(
            base64::engine::general_purpose::STANDARD
                .decode(c["audio_base64"].as_str().unwrap())
                .unwrap(),
        );
    }
    let dur = o["duration_seconds"].as_f64().unwrap();
    assert_eq!(pcm.len(), (dur * 24_000.0).round() as usize * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_never_lose_or_duplicate_a_result() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    p.inject(Route::Take, Fault::Status(500), 2);
    p.inject(Route::Take, Fault::Status(429), 1);
    p.inject(Route::Take, Fault::Drop, 1);
    p.inject(Route::Done, Fault::Status(503), 2);
    p.inject(Route::Done, Fault::Drop, 1);
    p.inject(Route::Done, Fault::Status(429), 1);
    // Arrives, but answers after the client's timeout: the retry is a duplicate of the same body.
    p.inject(Route::Done, Fault::SlowAck(Duration::from_millis(1500)), 1);
    p.inject(Route::Stream, Fault::Status(502), 1);
    p.inject(Route::Stream, Fault::Drop, 1);
    p.inject(
        Route::Stream,
        Fault::SlowAck(Duration::from_millis(1500)),
        1,
    );
    p.inject(Route::Ping, Fault::Status(500), 3);
    p.inject(Route::Stop, Fault::Status(500), 2);
    let mut ids = Vec::new();
    for i in 0..6 {
        let extra = if i % 2 == 0 {
            json!({"stream": true, "output_format": "pcm", "seed": i, "max_new_tokens": 40})
        } else {
            json!({"seed": i})
        };
        ids.push(p.push_job(tts(&format!("Fault test {i}."), extra)));
    }
    let want = ids.clone();
    run_until(
        &s,
        &p,
        client(&p, Duration::from_millis(700)),
        worker_cfg(3),
        move |p| want.iter().all(|id| p.final_result(id).is_some()),
    )
    .await;
    let mut retried_same = 0;
    for (i, id) in ids.iter().enumerate() {
        let o = output(&p, id);
        assert_eq!(o["success"], true);
        retried_same += p.final_result(id).unwrap().duplicates_same;
        if i % 2 == 0 {
            let chunks = p.stream(id);
            assert_eq!(
                o["streamed_chunks"],
                chunks.len(),
                "{id}: a streamed chunk was lost"
            );
            for (k, c) in chunks.iter().enumerate() {
                assert_eq!(c["output"]["chunk_index"], k, "{id}: chunks out of order");
            }
        }
    }
    assert!(
        retried_same <= 1,
        "only the slow ack may be delivered twice"
    );
    assert_eq!(p.pending_faults(), 0, "every injected fault was exercised");
    assert_eq!(p.finals().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_stop_cancels_a_running_job_and_it_ends_once() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    // Many chunks of long generation: far longer than the stop takes to arrive.
    let long_text = (0..120)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let id = p.push_job(tts(
        &long_text,
        json!({"stream": true, "output_format": "pcm", "chunk_method": "word", "chunk_max_word_num": 4, "max_new_tokens": 200, "temperature": 1.0}),
    ));
    let other = p.push_job(tts("A job that is not stopped.", json!({})));
    let p2 = p.clone();
    let stopper_id = id.clone();
    tokio::spawn(async move {
        // Stop once the job is visibly running (its first partial arrived).
        p2.wait_for(Duration::from_secs(120), |p| {
            !p.stream(&stopper_id).is_empty()
        })
        .await;
        p2.stop_job(&stopper_id);
    });
    run_jobs(&s, &p, 4, &[id.clone(), other.clone()]).await;
    let e = error_of(&p, &id);
    assert_eq!(e["error_type"], "cancelled");
    assert!(e["error_message"].as_str().unwrap().contains("job-stop"));
    assert_eq!(p.final_result(&id).unwrap().duplicates_different, 0);
    assert_eq!(output(&p, &other)["success"], true);
    // The engine really stopped the work: its slot is freed at the next step.
    let engine = s.ctx.service.engine.clone();
    for _ in 0..500 {
        if engine.stats().running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = engine.stats();
    assert_eq!(stats.running, 0, "{stats:?}");
    assert!(stats.requests_cancelled >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_carry_the_ids_in_progress() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    // Long enough (ten chunks) to be seen by several 50 ms heartbeats.
    let words = (0..40)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let id = p.push_job(tts(&words, json!({"chunk_method": "word", "chunk_max_word_num": 4, "max_new_tokens": 40, "generation_chunk_buffer_size": 2, "temperature": 1.0})));
    let want = id.clone();
    run_until(
        &s,
        &p,
        client(&p, Duration::from_secs(30)),
        worker_cfg(2),
        move |p| {
            // Also see an idle ping after the job so both states are checked.
            p.final_result(&want).is_some() && p.pings().last().is_some_and(Vec::is_empty)
        },
    )
    .await;
    let pings = p.pings();
    assert!(
        pings.iter().any(|ids| ids == std::slice::from_ref(&id)),
        "{pings:?}"
    );
    assert!(pings
        .iter()
        .all(|ids| ids.is_empty() || ids == std::slice::from_ref(&id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_running_jobs_or_fails_them_with_a_retry_hint() {
    let s = setup(15 << 20);
    // Drain allowed: the running job completes after the signal.
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let id = p.push_job(tts(
        "Finish me after the signal.",
        json!({"max_new_tokens": 60}),
    ));
    let p2 = p.clone();
    let c = client(&p, Duration::from_secs(30));
    let shutdown = async move {
        p2.wait_for(Duration::from_secs(60), |p| p.queued() == 0)
            .await;
    };
    let r = higgs_worker::run(s.ctx.clone(), c, worker_cfg(2), shutdown).await;
    assert_eq!(r.reason, ExitReason::Shutdown);
    assert_eq!(output(&p, &id)["success"], true);

    // No drain time: the job ends at once with an error that says to retry.
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let long_text = (0..80)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let id = p.push_job(tts(&long_text, json!({"chunk_method": "word", "chunk_max_word_num": 4, "max_new_tokens": 200, "temperature": 1.0})));
    let p2 = p.clone();
    let shutdown = async move {
        p2.wait_for(Duration::from_secs(60), |p| p.queued() == 0)
            .await;
    };
    let mut cfg = worker_cfg(2);
    cfg.drain_timeout = Duration::ZERO;
    higgs_worker::run(
        s.ctx.clone(),
        client(&p, Duration::from_secs(30)),
        cfg,
        shutdown,
    )
    .await;
    let e = error_of(&p, &id);
    assert!(
        e["error_message"].as_str().unwrap().contains("retry"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_worker_marks_the_result_and_exits_after_one_job() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let id = p.push_job(tts("One and done.", json!({})));
    let mut cfg = worker_cfg(1);
    cfg.refresh_worker = true;
    let r = higgs_worker::run(
        s.ctx.clone(),
        client(&p, Duration::from_secs(30)),
        cfg,
        std::future::pending::<()>(),
    )
    .await;
    assert_eq!(r.reason, ExitReason::Refresh);
    let f = p.final_result(&id).unwrap();
    assert_eq!(f.body["stopPod"], true);
    assert_eq!(f.body["output"]["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_passthrough_and_bad_input_jobs() {
    // The passthrough against the real server router: crates/cli/tests/worker_passthrough.rs.
    // Here it reaches the stand-in router of `common::setup`.
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let health = p.push_job(json!({"health_check": true}));
    let models = p.push_job(json!({"openai_route": "/v1/models"}));
    let failing =
        p.push_job(json!({"openai_route": "/v1/audio/speech", "openai_input": {"input": "Hi."}}));
    let bad_route = p.push_job(json!({"openai_route": "/v1/embeddings", "openai_input": {}}));
    let broken_stream = p.push_job(
        json!({"openai_route": "/v1/chat/completions", "openai_input": {"stream": true}}),
    );
    let bad_voice = p.push_job(tts("Hello.", json!({"ref_audio": "belindaa"})));
    let bad_field = p.push_job(tts("Hello.", json!({"temprature": 0.5})));
    let traversal = p.push_job(tts("Hello.", json!({"s3_key": "../../etc/passwd"})));
    let not_object = p.push_job(json!("just a string"));
    p.push_raw(json!({"id": "no-input"}));
    let all = vec![
        health.clone(),
        models.clone(),
        failing.clone(),
        bad_route.clone(),
        broken_stream.clone(),
        bad_voice.clone(),
        bad_field.clone(),
        traversal.clone(),
        not_object.clone(),
        "no-input".to_string(),
    ];
    run_jobs(&s, &p, 8, &all).await;
    let h = output(&p, &health);
    // The HTTP server's health report (higgs_service::health), seed handler fields first.
    assert_eq!(h["status"], "healthy");
    assert!(h["timestamp"].as_f64().unwrap() > 1.7e9, "{h}");
    assert_eq!(h["model_info"]["models_loaded"], true);
    assert_eq!(h["model_info"]["voice_prompts_available"], 1);
    assert_eq!(h["voice_suggestions"][0]["name"], "belinda");
    assert!(h["voice_suggestions"][0]["description"].is_string(), "{h}");
    assert_eq!(h["voices_available"], json!(["belinda"]));
    assert!(h["queue"]["slots"].as_u64().unwrap() > 0, "{h}");
    let m = output(&p, &models);
    assert_eq!(m["data"][0]["id"], "stand-in");
    assert_eq!(
        m["request_id"],
        json!(models),
        "the job id is the request id"
    );
    let e = error_of(&p, &failing);
    assert_eq!(e["status"], 400);
    assert_eq!(e["param"], "speed");
    assert_eq!(e["error_message"], "stand-in refusal");
    let e = error_of(&p, &bad_route);
    assert_eq!(e["status"], 404);
    assert!(e["error_message"]
        .as_str()
        .unwrap()
        .contains("/v1/audio/speech"));
    // A stream that broke with an internal detail: the job fails without the detail, naming the
    // job id to find it in the log.
    let e = error_of(&p, &broken_stream);
    assert_eq!(e["error_type"], "internal_error", "{e}");
    let m = e["error_message"].as_str().unwrap();
    assert!(
        !m.contains("forward") && !m.contains("CUDA") && !m.contains("deadbeef"),
        "an internal detail reached the client: {m}"
    );
    assert!(m.contains(&broken_stream), "{m}");
    let e = error_of(&p, &bad_voice);
    assert_eq!(e["error_type"], "not_found");
    assert_eq!(e["voice_suggestions"], json!(["belinda"]));
    let e = error_of(&p, &bad_field);
    assert!(
        e["error_message"].as_str().unwrap().contains("temprature"),
        "{e}"
    );
    // No S3 anywhere in this setup: the key is refused all the same, before generating.
    let e = error_of(&p, &traversal);
    assert_eq!(e["status"], 400, "{e}");
    assert_eq!(e["param"], "s3_key", "{e}");
    let e = error_of(&p, &not_object);
    assert!(e["error_message"].as_str().unwrap().contains("JSON object"));
    let e = error_of(&p, "no-input");
    assert!(e["error_message"].as_str().unwrap().contains("input"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_inline_results_fail_clearly_instead_of_a_platform_400() {
    let s = setup(2_000);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let id = p.push_job(tts("This result will not fit inline.", json!({})));
    run_jobs(&s, &p, 1, std::slice::from_ref(&id)).await;
    let e = error_of(&p, &id);
    assert_eq!(e["status"], 413);
    let m = e["error_message"].as_str().unwrap();
    assert!(
        m.contains("S3") && m.contains("s3Config") && m.contains("mp3"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_refusing_a_result_still_ends_the_job() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    p.inject(Route::Done, Fault::Status(400), 1);
    let id = p.push_job(tts("Refused once.", json!({})));
    run_jobs(&s, &p, 1, std::slice::from_ref(&id)).await;
    let e = error_of(&p, &id);
    assert_eq!(e["error_type"], "result_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_s3_config_uploads_the_audio() {
    let Some(server) = s3::start() else { return };
    server.create_bucket("jobs").await;
    let mut s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let port = reqwest::Url::parse(&server.endpoint)
        .unwrap()
        .port()
        .unwrap();
    // The operator allows the local S3 server.
    let host_port = format!("127.0.0.1:{port}");
    s.ctx = s
        .ctx
        .clone()
        .with_egress(higgs_storage::EgressPolicy::allowing([host_port.as_str()]).unwrap());
    let id = p.push_job(tts(
        "Upload me.",
        json!({"output_format": "flac", "s3Config": {"accessId": s3::ACCESS_KEY, "accessSecret": s3::SECRET_KEY, "bucketName": "jobs", "endpointUrl": server.endpoint}}),
    ));
    let bad = p.push_job(tts(
        "Bad config.",
        json!({"s3Config": {"accessId": "only-the-id"}}),
    ));
    run_jobs(&s, &p, 2, &[id.clone(), bad.clone()]).await;
    let o = output(&p, &id);
    assert!(o.get("audio_base64").is_none(), "{o}");
    assert!(o["s3_uri"].as_str().unwrap().starts_with("s3://jobs/"));
    let url = o["audio_url"].as_str().unwrap();
    let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"fLaC");
    let e = error_of(&p, &bad);
    assert_eq!(e["param"], "s3Config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_handed_out_again_is_answered_from_its_result_not_rerun() {
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    // Unseeded and sampled: a second run would give a different result.
    let input = json!({"transcript": "Hello there.", "temperature": 1.0, "max_new_tokens": 24});
    let id = p.push_job(input.clone());
    let again = id.clone();
    let pushed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushed2 = pushed.clone();
    run_until(
        &s,
        &p,
        client(&p, Duration::from_secs(30)),
        worker_cfg(4),
        move |p| {
            let Some(f) = p.final_result(&again) else {
                return false;
            };
            // Once its result is in, the platform hands the same job out again.
            if !pushed2.swap(true, std::sync::atomic::Ordering::SeqCst) {
                p.push_raw(json!({"id": again, "input": input}));
            }
            f.duplicates_same + f.duplicates_different >= 1
        },
    )
    .await;
    let f = p.final_result(&id).unwrap();
    assert_eq!(f.duplicates_different, 0, "the job was run again: {f:?}");
    assert_eq!(f.duplicates_same, 1, "{f:?}");
    assert_eq!(output(&p, &id)["success"], true);
    let stats = s.ctx.service.engine.stats();
    assert_eq!(
        stats.requests_finished, 1,
        "the engine ran it twice: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_from_jobs_cannot_reach_loopback_private_or_link_local_addresses() {
    // A listener that counts the connections it gets: none may arrive.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_c, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let s = setup(15 << 20);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let refused: Vec<String> = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://2130706433:{port}"),
        format!("http://0x7f.0.0.1:{port}"),
        format!("http://[::1]:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://0.0.0.0:{port}"),
        "http://169.254.169.254".to_string(),
        "http://10.1.2.3:9000".to_string(),
        "http://192.168.0.10:9000".to_string(),
        "http://100.64.0.1:9000".to_string(),
        "ftp://example.com".to_string(),
    ]
    .into_iter()
    .map(|endpoint| {
        p.push_job(tts(
            "Nowhere.",
            json!({"s3Config": {"accessId": "AKIDEXAMPLE", "accessSecret": "secret", "bucketName": "jobs", "endpointUrl": endpoint}}),
        ))
    })
    .collect();
    run_jobs(&s, &p, 8, &refused).await;
    for id in &refused {
        let e = error_of(&p, id);
        assert_eq!(e["param"], "s3Config", "{id}: {e}");
        let m = e["error_message"].as_str().unwrap();
        assert!(
            m.contains("--allow-private-endpoints") || m.contains("http://"),
            "{id}: {m}"
        );
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "an endpoint from a job reached the loopback listener"
    );
}

/// `batch_size` of every job-take from `from` on (1 when the take asked for one job).
fn take_sizes(p: &FakePlatform, from: usize) -> Vec<usize> {
    p.takes()[from..]
        .iter()
        .map(|q| q.get("batch_size").map_or(1, |b| b.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_every_engine_and_concurrency_follows_the_serving_slots() {
    // Two engines of two slots: the worker holds four jobs at once by default.
    let s = setup_engines(15 << 20, 2, 2);
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let cfg = || WorkerConfig {
        concurrency: None,
        ..worker_cfg(0)
    };
    let ids: Vec<String> = (0..10)
        .map(|i| {
            p.push_job(tts(
                &format!("Pooled job {i} says hello."),
                json!({"seed": i}),
            ))
        })
        .collect();
    let want = ids.clone();
    let report = run_until(
        &s,
        &p,
        client(&p, Duration::from_secs(30)),
        cfg(),
        move |p| want.iter().all(|id| p.final_result(id).is_some()),
    )
    .await;
    assert_eq!(report.jobs_finished, 10);
    for id in &ids {
        assert_eq!(output(&p, id)["success"], true);
    }
    let sizes = take_sizes(&p, 0);
    assert_eq!(sizes[0], 4, "the first take asks for every slot: {sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
    let pool = &s.ctx.service.engine;
    let finished = |i: usize| pool.engine(i).unwrap().stats().requests_finished;
    assert!(
        finished(0) > 0 && finished(1) > 0,
        "{} / {}",
        finished(0),
        finished(1)
    );
    assert_eq!(finished(0) + finished(1), 10);

    // Engine 1 fails: the worker holds only engine 0's two slots, and every job still ends.
    pool.engine(1).unwrap().shutdown();
    let before = finished(1);
    // A fresh platform: the first one may still hold the last take's long poll, which would take
    // (and lose) a job pushed now.
    let p = FakePlatform::start(KEY, Duration::from_millis(200))
        .await
        .unwrap();
    let ids: Vec<String> = (0..5)
        .map(|i| p.push_job(tts(&format!("After the failure {i}."), json!({"seed": i}))))
        .collect();
    let want = ids.clone();
    let report = run_until(
        &s,
        &p,
        client(&p, Duration::from_secs(30)),
        cfg(),
        move |p| want.iter().all(|id| p.final_result(id).is_some()),
    )
    .await;
    assert_eq!(report.reason, ExitReason::Shutdown, "engine 0 still serves");
    for id in &ids {
        assert_eq!(output(&p, id)["success"], true);
    }
    let sizes = take_sizes(&p, 0);
    assert_eq!(sizes[0], 2, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
    assert_eq!(finished(1), before, "a job went to the failed engine");
}
