//! One server over several engines (CPU engines on the fixture model standing in for GPUs):
//! `/health` reports each engine and the totals, `/metrics` labels each engine's series and sets
//! the pool's gauges, and an engine that fails leaves the others serving (`degraded`) until none
//! is left (`unhealthy`, 503). Its own process: it installs the global metrics recorder.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use candle_core::{DType, Device};
use higgs_engine::{start, EngineConfig, EngineParts, EnginePool, PoolMember, PoolPolicy};
use higgs_server::{app, AppState, ServerConfig};
use higgs_service::{Service, ServiceConfig};
use higgs_testkit::fixture;
use tower::ServiceExt;

const SLOTS: usize = 3;

fn state(engines: usize) -> AppState {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    higgs_engine::telemetry::describe_metrics();
    let members = (0..engines)
        .map(|i| {
            let parts = EngineParts {
                model: higgs_model::HiggsAudioModel::load(
                    &fixture("llm"),
                    DType::F32,
                    &Device::Cpu,
                )
                .unwrap(),
                codec: higgs_codec::Codec::load(&fixture("codec"), &Device::Cpu).unwrap(),
                tokenizer: higgs_text::TextTokenizer::from_model_dir(fixture("text-tokenizer"))
                    .unwrap(),
                voices: None,
            };
            let cfg = EngineConfig {
                max_running: SLOTS,
                max_seq_len: 512,
                max_queue: 8,
                label: i.to_string(),
                ..Default::default()
            };
            PoolMember {
                device: "cpu".into(),
                engine: Ok(start(cfg, parts).unwrap().0),
            }
        })
        .collect();
    let engine = EnginePool::new(members, PoolPolicy::default()).unwrap();
    assert!(engine.wait_ready(std::time::Duration::from_secs(120)));
    AppState {
        service: Service {
            engine,
            voices: None,
            config: Arc::new(ServiceConfig::default()),
            device: "cpu,cpu".into(),
            uploader: None,
        },
        config: Arc::new(ServerConfig::default()),
        metrics: Some(handle),
    }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String) {
    let resp = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let st = resp.status();
    let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (st, String::from_utf8(b.to_vec()).unwrap())
}

async fn health(state: &AppState) -> (StatusCode, serde_json::Value) {
    let (st, b) = get(state, "/health").await;
    (st, serde_json::from_str(&b).unwrap())
}

async fn speech(state: &AppState, i: usize) -> StatusCode {
    let body = serde_json::json!({"model": "tts-1", "input": format!("Engine test number {i}."),
        "voice": "alloy", "temperature": 0.0, "ras_win_len": 0, "max_new_tokens": 20, "response_format": "wav"});
    let resp = app(state.clone())
        .oneshot(
            Request::post("/v1/audio/speech")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let st = resp.status();
    let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
    st
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_per_engine_and_in_total_through_a_failure() {
    let s = state(2);
    let (st, h) = health(&s).await;
    assert_eq!(st, StatusCode::OK, "{h}");
    assert_eq!(h["status"], "healthy");
    let engines = h["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2, "{h}");
    for (i, e) in engines.iter().enumerate() {
        assert_eq!(e["engine"], i);
        assert_eq!(e["device"], "cpu");
        assert_eq!(e["status"], "serving");
        assert!(e.get("error").is_none(), "{e}");
        assert_eq!(e["queue"]["slots"], SLOTS);
    }
    assert_eq!(h["queue"]["slots"], 2 * SLOTS, "totals: {h}");
    assert_eq!(h["queue"]["kv_positions_total"], 2 * SLOTS * 512);
    // Concurrent requests: both engines take some.
    let results = futures_util::future::join_all((0..6).map(|i| speech(&s, i))).await;
    assert!(
        results.iter().all(|st| *st == StatusCode::OK),
        "{results:?}"
    );
    let mut finished = Vec::new();
    for _ in 0..100 {
        let (_, h) = health(&s).await;
        finished = h["engines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["queue"]["requests_finished"].as_u64().unwrap())
            .collect();
        if finished.iter().sum::<u64>() == 6 {
            assert_eq!(h["queue"]["requests_finished"], 6, "{h}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(finished.iter().sum::<u64>(), 6, "{finished:?}");
    assert!(
        finished.iter().all(|&n| n > 0),
        "one engine idle: {finished:?}"
    );
    let (_, m) = get(&s, "/metrics").await;
    for (i, n) in finished.iter().enumerate() {
        let series = format!("higgs_requests_total{{outcome=\"finished\",engine=\"{i}\"}}");
        assert_eq!(sample(&m, &series), Some(*n as f64), "{series}\n{m}");
        assert_eq!(
            sample(&m, &format!("higgs_engine_serving{{engine=\"{i}\"}}")),
            Some(1.0),
            "{m}"
        );
        assert!(
            m.contains(&format!("higgs_step_seconds_count{{engine=\"{i}\"}}")),
            "{m}"
        );
    }
    assert_eq!(
        sample(&m, "higgs_engines{state=\"serving\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "higgs_engines{state=\"failed\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "higgs_pool_slots"),
        Some((2 * SLOTS) as f64),
        "{m}"
    );
    assert_eq!(sample(&m, "higgs_pool_queue_depth"), Some(0.0), "{m}");
    assert!(m.contains("# HELP higgs_pool_queue_depth"), "{m}");

    // Engine 1 fails: out of rotation, reported; engine 0 serves every request.
    s.service.engine.engine(1).unwrap().shutdown();
    let (st, h) = health(&s).await;
    assert_eq!(st, StatusCode::OK, "degraded still serves: {h}");
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["engines"][1]["status"], "failed");
    assert!(
        h["engines"][1]["error"]
            .as_str()
            .unwrap()
            .contains("stopped"),
        "{h}"
    );
    assert_eq!(h["engines"][0]["status"], "serving");
    assert_eq!(get(&s, "/ping").await.0, StatusCode::OK);
    let results = futures_util::future::join_all((0..4).map(|i| speech(&s, 10 + i))).await;
    assert!(
        results.iter().all(|st| *st == StatusCode::OK),
        "{results:?}"
    );
    let (_, m) = get(&s, "/metrics").await;
    assert_eq!(
        sample(&m, "higgs_engines{state=\"serving\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "higgs_engines{state=\"failed\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "higgs_engine_serving{engine=\"1\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(sample(&m, "higgs_pool_slots"), Some(SLOTS as f64), "{m}");
    assert_eq!(
        sample(
            &m,
            "higgs_requests_total{outcome=\"finished\",engine=\"1\"}"
        ),
        Some(finished[1] as f64),
        "the failed engine got no request: {m}"
    );

    // None left: unhealthy, 503, and requests are refused as unavailable.
    s.service.engine.engine(0).unwrap().shutdown();
    let (st, h) = health(&s).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{h}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["model_info"]["models_loaded"], false);
    assert_eq!(speech(&s, 99).await, StatusCode::SERVICE_UNAVAILABLE);
}
