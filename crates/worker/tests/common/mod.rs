//! Real engines on the fixture model and codec, with the `belinda` voice.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use candle_core::{DType, Device};
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{start, EngineConfig, EngineParts, EnginePool, PoolMember, PoolPolicy};
use higgs_service::{Service, ServiceConfig};
use higgs_testkit::fixture;
use higgs_worker::JobContext;

pub struct Setup {
    pub ctx: JobContext,
    _voices: tempfile::TempDir,
}

pub fn setup(max_inline: usize) -> Setup {
    setup_engines(max_inline, 1, 8)
}

/// [`setup`] over `engines` engines of `max_running` slots each, sharing one voice library.
pub fn setup_engines(max_inline: usize, engines: usize, max_running: usize) -> Setup {
    let voices = tempfile::tempdir().unwrap();
    let shared = higgs_testkit::fixtures_root().join("../voices");
    for ext in ["wav", "txt"] {
        std::fs::copy(
            shared.join(format!("belinda.{ext}")),
            voices.path().join(format!("belinda.{ext}")),
        )
        .unwrap();
    }
    let library = Arc::new(VoiceLibrary::open(voices.path()).unwrap());
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
                voices: Some(library.clone()),
            };
            let cfg = EngineConfig {
                max_running,
                max_seq_len: 1024,
                max_queue: 64,
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
    // Health answers "ok" only once the engines have warmed up.
    assert!(engine.wait_ready(std::time::Duration::from_secs(120)));
    let service = Service {
        engine,
        voices: Some(library),
        config: Arc::new(ServiceConfig::default()),
        device: "cpu".into(),
        uploader: None,
    };
    Setup {
        ctx: JobContext::new(service, stand_in_openai(), max_inline),
        _voices: voices,
    }
}

/// Stands in for the server's router (the worker does not depend on the server; the real one is
/// tested in crates/cli/tests/worker_passthrough.rs): a model list, an OpenAI-shaped 400, and an
/// SSE chat stream that breaks after one event with an internal detail.
fn stand_in_openai() -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/v1/models",
            // Echoes the request id: the worker sends the job id.
            get(|h: axum::http::HeaderMap| async move {
                let id = h.get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from);
                axum::Json(serde_json::json!({"object": "list", "data": [{"id": "stand-in"}], "request_id": id}))
            }),
        )
        .route(
            "/v1/audio/speech",
            post(|| async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": {"message": "stand-in refusal", "type": "bad_request", "param": "speed", "code": 400}})),
                )
            }),
        )
        .route(
            "/v1/chat/completions",
            post(|| async {
                let events = futures_util::stream::iter([
                    Ok(axum::body::Bytes::from_static(b"data: {\"choices\": []}\n\n")),
                    Err(std::io::Error::other(
                        "model forward failed: CUDA_ERROR_ILLEGAL_ADDRESS at 0xdeadbeef",
                    )),
                ]);
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    axum::body::Body::from_stream(events),
                )
            }),
        )
}
