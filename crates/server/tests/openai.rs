//! The OpenAI doors in-process over the real tiny engine: `audio.voice` on chat completions,
//! OpenAI's request fields, and whole-file (sized) audio responses.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use candle_core::{DType, Device};
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{start, EngineConfig, EngineParts};
use higgs_server::{app, AppState, ServerConfig};
use higgs_service::{Service, ServiceConfig};
use higgs_testkit::fixture;
use tower::ServiceExt;

struct Setup {
    state: AppState,
    _voices: tempfile::TempDir,
}

/// A server over the fixture model and codec with `belinda` and `en_man` in its library.
fn setup() -> Setup {
    let voices = tempfile::tempdir().unwrap();
    let shared = higgs_testkit::fixtures_root().join("../voices");
    for n in ["belinda", "en_man"] {
        for ext in ["wav", "txt"] {
            std::fs::copy(
                shared.join(format!("{n}.{ext}")),
                voices.path().join(format!("{n}.{ext}")),
            )
            .unwrap();
        }
    }
    let lib = Some(Arc::new(VoiceLibrary::open(voices.path()).unwrap()));
    let parts = EngineParts {
        model: higgs_model::HiggsAudioModel::load(&fixture("llm"), DType::F32, &Device::Cpu)
            .unwrap(),
        codec: higgs_codec::Codec::load(&fixture("codec"), &Device::Cpu).unwrap(),
        tokenizer: higgs_text::TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: lib.clone(),
    };
    let cfg = EngineConfig {
        max_running: 4,
        max_seq_len: 1024,
        max_queue: 16,
        ..Default::default()
    };
    let (engine, _) = start(cfg, parts).unwrap();
    assert!(engine.wait_ready(std::time::Duration::from_secs(120)));
    let state = AppState {
        service: Service {
            engine,
            voices: lib,
            config: Arc::new(ServiceConfig::default()),
            device: "cpu".into(),
            uploader: None,
        },
        config: Arc::new(ServerConfig {
            max_body_bytes: 40 << 20,
            ..Default::default()
        }),
        metrics: None,
    };
    Setup {
        state,
        _voices: voices,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

async fn post(state: &AppState, uri: &str, body: serde_json::Value) -> Reply {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

fn chat(voice: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"model": "higgs", "modalities": ["text", "audio"],
        "temperature": 0, "ras_win_len": 0, "max_completion_tokens": 20,
        "messages": [{"role": "user", "content": "Say hello."}]});
    if let Some(voice) = voice {
        v["audio"] = serde_json::json!({"voice": voice, "format": "wav"});
    }
    v
}

fn prompt_tokens(r: &Reply) -> u64 {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["content-type"], "application/json");
    json(&r.body)["usage"]["prompt_tokens"].as_u64().unwrap()
}

#[tokio::test]
async fn chat_audio_voice_is_the_speech_voice() {
    let s = setup();
    let none = prompt_tokens(&post(&s.state, "/v1/chat/completions", chat(None)).await);
    let alloy = prompt_tokens(&post(&s.state, "/v1/chat/completions", chat(Some("alloy"))).await);
    let belinda =
        prompt_tokens(&post(&s.state, "/v1/chat/completions", chat(Some("belinda"))).await);
    let en_man = prompt_tokens(&post(&s.state, "/v1/chat/completions", chat(Some("en_man"))).await);
    // A built-in OpenAI name without a library voice is no reference at all.
    assert_eq!(alloy, none);
    // A library voice adds its transcript turn and its reference audio to the prompt; the two
    // voices have different transcripts and recordings.
    let transcript = |n: &str| {
        std::fs::read_to_string(higgs_testkit::fixtures_root().join(format!("../voices/{n}.txt")))
            .unwrap()
    };
    assert!(!transcript("belinda").trim().is_empty());
    assert!(belinda > alloy + 10, "belinda {belinda} vs alloy {alloy}");
    assert!(en_man > alloy + 10, "en_man {en_man} vs alloy {alloy}");
    assert_ne!(belinda, en_man);
    // The same voice through `/v1/audio/speech` gives the same reference context: the prompt
    // of `speech` (user text = input) equals the chat prompt for the same text.
    let r = post(
        &s.state,
        "/v1/audio/speech",
        serde_json::json!({"model": "tts-1", "input": "Say hello.", "voice": "belinda",
            "temperature": 0, "ras_win_len": 0, "max_new_tokens": 20, "stream_format": "sse", "response_format": "pcm"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body).unwrap();
    let done: serde_json::Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .find(|e| e["type"] == "speech.audio.done")
        .unwrap();
    assert_eq!(done["usage"]["input_tokens"].as_u64().unwrap(), belinda);
    // `{"id": ...}` voices work as on speech.
    let mut by_id = chat(None);
    by_id["audio"] = serde_json::json!({"voice": {"id": "belinda"}, "format": "wav"});
    assert_eq!(
        prompt_tokens(&post(&s.state, "/v1/chat/completions", by_id).await),
        belinda
    );
    // An unknown name is a 404 naming the library's voices, never a silent default.
    let r = post(&s.state, "/v1/chat/completions", chat(Some("doesnotexist"))).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let e = json(&r.body);
    assert_eq!(e["error"]["type"], "not_found");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("doesnotexist"));
    let sugg: Vec<&str> = e["error"]["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(sugg.contains(&"belinda"), "{sugg:?}");
    // Speech says the same.
    let r = post(
        &s.state,
        "/v1/audio/speech",
        serde_json::json!({"model": "tts-1", "input": "Hi.", "voice": "doesnotexist"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
