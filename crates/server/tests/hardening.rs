//! Issue #17 probes, bounded in count and time, in-process over a real engine on the fixture
//! model: reference audio checked (part count, declared lengths) before anything is decoded,
//! exactly one of concurrent uploads of a voice name wins, `/generate` 429 with `Retry-After`.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use candle_core::{DType, Device};
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{start, EngineConfig, EngineParts};
use higgs_server::{app, AppState, ServerConfig};
use higgs_service::{Service, ServiceConfig};
use higgs_testkit::fixture;
use tower::ServiceExt;

struct Setup {
    state: AppState,
    voices: tempfile::TempDir,
}

fn setup(max_running: usize, max_queue: usize) -> Setup {
    let voices = tempfile::tempdir().unwrap();
    let lib = Some(Arc::new(VoiceLibrary::open(voices.path()).unwrap()));
    let parts = EngineParts {
        model: higgs_model::HiggsAudioModel::load(&fixture("llm"), DType::F32, &Device::Cpu)
            .unwrap(),
        codec: higgs_codec::Codec::load(&fixture("codec"), &Device::Cpu).unwrap(),
        tokenizer: higgs_text::TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: lib.clone(),
    };
    let cfg = EngineConfig {
        max_running,
        max_seq_len: 1024,
        max_queue,
        ..Default::default()
    };
    let (engine, _) = start(cfg, parts).unwrap();
    assert!(engine.wait_ready(std::time::Duration::from_secs(120)));
    let state = AppState {
        service: Service {
            engine: higgs_engine::EnginePool::single(engine, "cpu"),
            voices: lib,
            config: Arc::new(ServiceConfig::default()),
            device: "cpu".into(),
            uploader: None,
        },
        config: Arc::new(ServerConfig::default()),
        metrics: None,
    };
    Setup { state, voices }
}

async fn call(
    state: &AppState,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, v)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A WAV file whose header declares `declared_secs` of 8 kHz audio but that holds 0.1 s: a
/// decoder that trusted it would decode garbage or fail as truncated; the header alone says too
/// long.
fn lying_wav(declared_secs: u32) -> Vec<u8> {
    let mut w =
        higgs_audio_io::encode(higgs_audio_io::AudioFormat::Wav, &[0.1; 800], 8000).unwrap();
    let data_len = declared_secs * 8000 * 2;
    w[40..44].copy_from_slice(&data_len.to_le_bytes());
    w[4..8].copy_from_slice(&(data_len + 36).to_le_bytes());
    w
}

fn chat_with_parts(parts: Vec<String>) -> serde_json::Value {
    let content: Vec<serde_json::Value> = parts
        .into_iter()
        .map(|d| serde_json::json!({"type": "input_audio", "input_audio": {"data": d, "format": "wav"}}))
        .collect();
    serde_json::json!({"model": "higgs", "max_completion_tokens": 10, "messages": [
        {"role": "assistant", "content": content},
        {"role": "user", "content": "Say hello."}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_audio_parts_are_counted_and_their_lengths_read_before_any_is_decoded() {
    let s = setup(2, 4);
    // Nine parts that are not even audio: refused for their number, not for their content
    // (a decode-first server answers 422 for the first one).
    let (st, _, v) = call(
        &s.state,
        "/v1/chat/completions",
        chat_with_parts(vec![b64(b"not audio at all"); 9]),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Three parts declaring 119 s each (each under the 120 s limit per clip, together over the
    // 300 s of a request): refused from the headers (decoding would find them truncated: 422).
    let (st, _, v) = call(
        &s.state,
        "/v1/chat/completions",
        chat_with_parts(vec![b64(&lying_wav(119)); 3]),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("in all"),
        "{v}"
    );
    // The same through /generate's base64 reference: one clip declaring more than 120 s.
    let (st, _, v) = call(
        &s.state,
        "/generate",
        serde_json::json!({"transcript": "Hello.", "ref_audio": b64(&lying_wav(500))}),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // A real clip still works.
    let voice =
        std::fs::read(higgs_testkit::fixtures_root().join("../voices/en_woman.wav")).unwrap();
    let (st, _, v) = call(
        &s.state,
        "/v1/chat/completions",
        chat_with_parts(vec![b64(&voice)]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_8_concurrent_uploads_of_a_voice_name_wins() {
    let s = setup(1, 4);
    let sources = ["belinda", "en_man", "en_woman", "vex"];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let state = s.state.clone();
        let src = sources[i % sources.len()];
        let audio =
            std::fs::read(higgs_testkit::fixtures_root().join(format!("../voices/{src}.wav")))
                .unwrap();
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"name": "contested", "transcript": format!("upload {i}"), "audio_base64": b64(&audio)});
            let (st, _, v) = call(&state, "/v1/audio/voices", body).await;
            (i, st, v)
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (i, st, v) = tokio::time::timeout(std::time::Duration::from_secs(120), t)
            .await
            .unwrap()
            .unwrap();
        match st {
            StatusCode::CREATED => created.push(i),
            StatusCode::CONFLICT => assert_eq!(v["error"]["type"], "conflict", "{v}"),
            other => panic!("upload {i}: {other} {v}"),
        }
    }
    assert_eq!(created.len(), 1, "winners: {created:?}");
    // The stored transcript is the winner's.
    let t = std::fs::read_to_string(s.voices.path().join("contested.txt")).unwrap();
    assert_eq!(t, format!("upload {}", created[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_429_carries_retry_after() {
    let s = setup(1, 1);
    let wire: higgs_api::generate::GenerateRequestWire = serde_json::from_value(
        serde_json::json!({"transcript": "A long one to hold the slot.", "max_new_tokens": 400}),
    )
    .unwrap();
    let req = wire
        .validate(&higgs_api::Limits::default())
        .unwrap()
        .request;
    // One running, one waiting: the engine is full.
    let held: Vec<_> = (0..2)
        .map(|_| s.state.service.engine.submit(req.clone()).unwrap())
        .collect();
    let (st, h, v) = call(
        &s.state,
        "/generate",
        serde_json::json!({"transcript": "Refused.", "max_new_tokens": 10}),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error_type"], "overloaded");
    assert_eq!(h.get("retry-after").unwrap(), "1");
    drop(held);
}
