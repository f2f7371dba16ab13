//! The local test API in-process: both mounts, job states, runsync waiting, stream draining,
//! cancel of queued and running jobs, retry, purge, auth and error answers. (The official `runpod`
//! client against a real process is in tests/e2e_runpod.)
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer k");
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn input(text: &str, extra: Value) -> Value {
    let mut v =
        json!({"transcript": text, "temperature": 0.0, "ras_win_len": 0, "max_new_tokens": 20});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    json!({ "input": v })
}

async fn wait_final(app: &axum::Router, prefix: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (_, v) = call(app, "GET", &format!("{prefix}/status/{id}"), None).await;
        if ["COMPLETED", "FAILED", "CANCELLED"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never finished");
}

fn long_job() -> Value {
    let words = (0..200)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    input(
        &words,
        json!({"chunk_method": "word", "chunk_max_word_num": 4, "max_new_tokens": 64, "temperature": 1.0, "seed": 3}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_both_mounts_with_the_platform_shapes() {
    let s = common::setup(15 << 20);
    let app = higgs_worker::local_api::router(s.ctx.clone(), 2, Some("k".into()));
    for prefix in ["", "/v2/my-endpoint"] {
        let (st, v) = call(
            &app,
            "POST",
            &format!("{prefix}/run"),
            Some(input("Hello.", json!({}))),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["status"], "IN_QUEUE");
        let id = v["id"].as_str().unwrap().to_string();
        let done = wait_final(&app, prefix, &id).await;
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(done["output"]["success"], true);
        assert!(done["delayTime"].is_u64() && done["executionTime"].is_u64());
        // POST works for /status as with the SDK's own test server.
        let (_, again) = call(&app, "POST", &format!("{prefix}/status/{id}"), None).await;
        assert_eq!(again["output"], done["output"]);
        let (_, sync) = call(
            &app,
            "POST",
            &format!("{prefix}/runsync"),
            Some(input("Sync.", json!({}))),
        )
        .await;
        assert_eq!(sync["status"], "COMPLETED");
        assert_eq!(sync["output"]["success"], true);
    }
    let (st, h) = call(&app, "GET", "/v2/x/health", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["jobs"]["completed"], 4);
    assert_eq!(h["workers"]["idle"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_drains_partials_once_and_runsync_returns_early_with_the_id() {
    let s = common::setup(15 << 20);
    let app = higgs_worker::local_api::router(s.ctx.clone(), 2, Some("k".into()));
    let (_, v) = call(
        &app,
        "POST",
        "/run",
        Some(input(
            "Stream me.",
            json!({"stream": true, "output_format": "pcm", "max_new_tokens": 50}),
        )),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    let mut got = Vec::new();
    loop {
        let (_, s) = call(&app, "GET", &format!("/stream/{id}"), None).await;
        let chunks = s["stream"].as_array().unwrap().clone();
        let fin = s["status"] == "COMPLETED";
        got.extend(chunks);
        if fin && s["stream"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(!got.is_empty());
    for (i, c) in got.iter().enumerate() {
        assert_eq!(c["output"]["chunk_index"], i);
    }
    let done = wait_final(&app, "", &id).await;
    assert_eq!(done["output"]["streamed_chunks"], got.len());

    // A long job with a 1 s wait: IN_QUEUE/IN_PROGRESS and the id to poll, as on the platform.
    let (_, early) = call(&app, "POST", "/runsync?wait=1000", Some(long_job())).await;
    assert!(
        ["IN_QUEUE", "IN_PROGRESS"].contains(&early["status"].as_str().unwrap()),
        "{early}"
    );
    let id = early["id"].as_str().unwrap();
    let (_, c) = call(&app, "POST", &format!("/cancel/{id}"), None).await;
    assert_eq!(c["status"], "CANCELLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_retry_purge_and_errors() {
    let s = common::setup(15 << 20);
    // One slot: the second and third jobs wait in the queue.
    let app = higgs_worker::local_api::router(s.ctx.clone(), 1, Some("k".into()));
    let (_, a) = call(&app, "POST", "/run", Some(long_job())).await;
    let (_, b) = call(&app, "POST", "/run", Some(long_job())).await;
    let (_, c) = call(&app, "POST", "/run", Some(long_job())).await;
    let (a, b, c) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
        c["id"].as_str().unwrap().to_string(),
    );
    // Jobs start in submission order: the first runs, the others wait.
    for _ in 0..500 {
        let (_, sa) = call(&app, "GET", &format!("/status/{a}"), None).await;
        if sa["status"] == "IN_PROGRESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, sa) = call(&app, "GET", &format!("/status/{a}"), None).await;
    assert_eq!(sa["status"], "IN_PROGRESS");
    let (_, sb) = call(&app, "GET", &format!("/status/{b}"), None).await;
    assert_eq!(sb["status"], "IN_QUEUE");
    // Cancel a queued job: it never runs.
    let (_, x) = call(&app, "POST", &format!("/cancel/{b}"), None).await;
    assert_eq!(x["status"], "CANCELLED");
    // Purge removes the other queued one.
    let (_, p) = call(&app, "POST", "/purge-queue", None).await;
    assert_eq!(p["removed"], 1);
    let (st, _) = call(&app, "GET", &format!("/status/{c}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Cancel the running one: the engine frees its slot.
    let (_, x) = call(&app, "POST", &format!("/cancel/{a}"), None).await;
    assert_eq!(x["status"], "CANCELLED");
    let engine = s.ctx.service.engine.clone();
    for _ in 0..200 {
        if engine.stats().running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.stats().running, 0);
    assert_eq!(wait_final(&app, "", &a).await["status"], "CANCELLED");

    // A failing job, then a retry of it (same input: fails again, and is counted as retried).
    let (_, f) = call(
        &app,
        "POST",
        "/run",
        Some(input("x", json!({"top_p": 0.0}))),
    )
    .await;
    let fid = f["id"].as_str().unwrap().to_string();
    let failed = wait_final(&app, "", &fid).await;
    assert_eq!(failed["status"], "FAILED");
    let err: Value = serde_json::from_str(failed["error"].as_str().unwrap()).unwrap();
    assert_eq!(err["param"], "top_p");
    let (_, r) = call(&app, "POST", &format!("/retry/{fid}"), None).await;
    assert_eq!(r["status"], "IN_QUEUE");
    assert_eq!(wait_final(&app, "", &fid).await["status"], "FAILED");
    let (_, h) = call(&app, "GET", "/health", None).await;
    assert_eq!(h["jobs"]["retried"], 1);
    let (st, _) = call(&app, "POST", &format!("/retry/{a}"), None).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "only FAILED jobs can be retried"
    );

    // Bad bodies and unknown ids answer clearly.
    let (st, e) = call(
        &app,
        "POST",
        "/run",
        Some(json!({"transcript": "no input wrapper"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("\"input\""));
    let (st, _) = call(&app, "GET", "/status/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&app, "GET", "/stream/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = call(&app, "GET", "/nowhere", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(e["error"].as_str().unwrap().contains("/runsync"));
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/health")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_private_addresses_are_refused_unless_allowed() {
    // A listener standing for an internal service: it counts what reaches it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 1 << 16];
            let _ = c.read(&mut buf).await;
            let _ = c
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let s = common::setup(15 << 20);
    let app = higgs_worker::local_api::router(s.ctx.clone(), 2, Some("k".into()));
    for hook in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://169.254.169.254/latest".to_string(),
        "file:///etc/passwd".to_string(),
    ] {
        let mut body = input("Hello.", json!({}));
        body["webhook"] = json!(hook);
        let (st, v) = call(&app, "POST", "/run", Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{hook}: {v}");
    }
    // Allowed by the operator: the result is posted there.
    let open = s
        .ctx
        .clone()
        .with_egress(higgs_storage::EgressPolicy::allowing([format!("127.0.0.1:{port}")]).unwrap());
    let app = higgs_worker::local_api::router(open, 2, Some("k".into()));
    let mut body = input("Hello.", json!({}));
    body["webhook"] = json!(format!("http://127.0.0.1:{port}/hook"));
    let (st, v) = call(&app, "POST", "/run", Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let done = wait_final(&app, "", v["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    for _ in 0..200 {
        if hits.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
