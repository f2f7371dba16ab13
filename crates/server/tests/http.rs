//! The HTTP server in-process (`app(state).oneshot(..)`) over a real engine on the fixture model
//! and codec: every route, every format header, the JSON error shape and status of each error path.
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
    _voices: tempfile::TempDir,
}

fn setup(max_queue: usize, api_key: Option<&str>, max_body: usize) -> Setup {
    let s = setup_warming(max_queue, api_key, max_body);
    // Health answers "healthy" only once the engine has warmed up.
    assert!(s
        .state
        .service
        .engine
        .wait_ready(std::time::Duration::from_secs(120)));
    s
}

/// [`setup`] without waiting for the engine's warm-up.
fn setup_warming(max_queue: usize, api_key: Option<&str>, max_body: usize) -> Setup {
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
    let parts_voices = Some(Arc::new(VoiceLibrary::open(voices.path()).unwrap()));
    let parts = EngineParts {
        model: higgs_model::HiggsAudioModel::load(&fixture("llm"), DType::F32, &Device::Cpu)
            .unwrap(),
        codec: higgs_codec::Codec::load(&fixture("codec"), &Device::Cpu).unwrap(),
        tokenizer: higgs_text::TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: parts_voices.clone(),
    };
    let cfg = EngineConfig {
        max_running: 4,
        max_seq_len: 1024,
        max_queue,
        ..Default::default()
    };
    let (engine, _) = start(cfg, parts).unwrap();
    let state = AppState {
        service: Service {
            engine: higgs_engine::EnginePool::single(engine, "cpu"),
            voices: parts_voices,
            config: Arc::new(ServiceConfig::default()),
            device: "cpu".into(),
            uploader: None,
        },
        config: Arc::new(ServerConfig {
            api_key: api_key.map(String::from),
            max_body_bytes: max_body,
            ..Default::default()
        }),
        metrics: None,
    };
    Setup {
        state,
        _voices: voices,
    }
}

fn default_setup() -> Setup {
    setup(16, None, 40 << 20)
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app(state.clone())
        .oneshot(b.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, ct, bytes)
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

fn speech(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"model": "tts-1", "input": "Hello there, a short test.", "voice": "alloy",
        "temperature": 0.0, "ras_win_len": 0, "max_new_tokens": 30});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[tokio::test]
async fn speech_in_every_format_with_the_right_content_type() {
    let s = default_setup();
    for (fmt, ct) in [
        ("wav", "audio/wav"),
        ("mp3", "audio/mpeg"),
        ("flac", "audio/flac"),
        ("opus", "audio/ogg"),
        ("pcm", "audio/pcm"),
    ] {
        let (status, got_ct, bytes) = call(
            &s.state,
            "POST",
            "/v1/audio/speech",
            Some(speech(serde_json::json!({"response_format": fmt}))),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{fmt}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(got_ct.as_deref(), Some(ct), "{fmt}");
        assert!(!bytes.is_empty(), "{fmt}");
        if fmt != "pcm" {
            let a = higgs_audio_io::decode_bytes(&bytes, &Default::default()).unwrap();
            assert_eq!(a.source_channels, 1);
            assert!(a.duration_seconds() > 0.0);
        } else {
            assert_eq!(bytes.len() % 2, 0);
        }
    }
}

#[tokio::test]
async fn speech_sse_and_voice_cloning() {
    let s = default_setup();
    let (status, ct, body) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(
            serde_json::json!({"stream_format": "sse", "response_format": "pcm"}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.unwrap().starts_with("text/event-stream"));
    let text = String::from_utf8(body).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(events.iter().any(|e| e["type"] == "speech.audio.delta"));
    assert_eq!(events.last().unwrap()["type"], "speech.audio.done");
    assert!(
        events.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // A library voice (reference codes encoded and cached on first use).
    let (status, _, bytes) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(
            serde_json::json!({"voice": "belinda", "response_format": "wav"}),
        )),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let (status, _, bytes) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(
            serde_json::json!({"voice": {"id": "en_man"}, "response_format": "wav"}),
        )),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[tokio::test]
async fn error_paths_have_stable_json_and_status() {
    let s = default_setup();
    let check = |status: StatusCode, body: &[u8], want: StatusCode, ty: &str| {
        assert_eq!(status, want, "{}", String::from_utf8_lossy(body));
        let j = json(body);
        assert_eq!(j["error"]["type"], ty, "{j}");
        assert_eq!(j["error"]["code"], want.as_u16());
        assert!(!j["error"]["message"].as_str().unwrap().is_empty());
        j
    };
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"voice": "nobody"}))),
    )
    .await;
    let j = check(st, &b, StatusCode::NOT_FOUND, "not_found");
    assert!(j["error"]["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "belinda"));
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"voice": "../../etc/passwd"}))),
    )
    .await;
    assert!(
        st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST,
        "{st}"
    );
    assert!(String::from_utf8_lossy(&b).contains("invalid voice name"));
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"speed": 5.0}))),
    )
    .await;
    let j = check(st, &b, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(j["error"]["param"], "speed");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[0.25, 4.0]"));
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"response_format": "aac"}))),
    )
    .await;
    check(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"input": ""}))),
    )
    .await;
    check(st, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"input": "x".repeat(10_001)}))),
    )
    .await;
    check(st, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"max_new_tokens": 100000}))),
    )
    .await;
    check(st, &b, StatusCode::BAD_REQUEST, "bad_request");
    // Malformed JSON, wrong content type, unknown route.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/audio/speech")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let r = app(s.state.clone()).oneshot(req).await.unwrap();
    let st = r.status();
    check(
        st,
        &axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let req = Request::builder()
        .method("POST")
        .uri("/v1/audio/speech")
        .body(Body::from("{}"))
        .unwrap();
    let r = app(s.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (st, _, b) = call(&s.state, "GET", "/nope", None).await;
    check(st, &b, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn auth_body_limit_and_overload() {
    let s = setup(16, Some("sekret"), 40 << 20);
    let (st, _, _) = call(&s.state, "GET", "/v1/models", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .uri("/v1/models")
        .header("authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app(s.state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let req = Request::builder()
        .uri("/v1/models")
        .header("authorization", "Bearer sekret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app(s.state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    for open in ["/health", "/ping", "/metrics", "/openapi.json"] {
        assert_eq!(
            call(&s.state, "GET", open, None).await.0,
            StatusCode::OK,
            "{open}"
        );
    }
    let small = setup(16, None, 1000);
    let (st, _, b) = call(
        &small.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({"input": "y".repeat(5000)}))),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    // No queue: the 4 slots taken, the next request is refused (free slots count first, so an
    // empty engine would take 4 more).
    let full = setup(0, None, 40 << 20);
    let wire: higgs_api::generate::GenerateRequestWire = serde_json::from_value(
        serde_json::json!({"transcript": "A long one to hold a slot.", "max_new_tokens": 400}),
    )
    .unwrap();
    let hold = wire
        .validate(&higgs_api::Limits::default())
        .unwrap()
        .request;
    let _held: Vec<_> = (0..4)
        .map(|_| full.state.service.engine.submit(hold.clone()).unwrap())
        .collect();
    let (st, _, b) = call(
        &full.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(serde_json::json!({}))),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(json(&b)["error"]["type"], "overloaded");
}

#[tokio::test]
async fn native_generate_success_and_failure() {
    let s = default_setup();
    let body = serde_json::json!({"transcript": "[SPEAKER0] Hello.\n[SPEAKER1] Hi there.", "ref_audio": "belinda,en_man",
        "chunk_method": "speaker", "temperature": 0, "ras_win_len": 0, "max_new_tokens": 30, "seed": 3});
    let (st, _, b) = call(&s.state, "POST", "/generate", Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let j = json(&b);
    assert_eq!(j["success"], true);
    let wav = base64::engine::general_purpose::STANDARD
        .decode(j["audio_base64"].as_str().unwrap())
        .unwrap();
    let a = higgs_audio_io::decode_bytes(&wav, &Default::default()).unwrap();
    assert!((a.duration_seconds() - j["duration_seconds"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(j["sample_rate"], 24000);
    assert_eq!(j["metadata"]["voice_clone"], true);
    assert_eq!(
        j["metadata"]["generation_parameters"]["chunks_processed"],
        2
    );
    assert!(
        j["metadata"]["generation_parameters"]["generation_time"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Base64 reference audio (no transcript: goes into the system message).
    let voice =
        std::fs::read(higgs_testkit::fixtures_root().join("../voices/en_woman.wav")).unwrap();
    let body = serde_json::json!({"transcript": "Cloned from an upload.", "ref_audio": base64::engine::general_purpose::STANDARD.encode(voice),
        "temperature": 0, "ras_win_len": 0, "max_new_tokens": 30});
    let (st, _, b) = call(&s.state, "POST", "/generate", Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    // Failures keep the shape.
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({"transcript": "x", "ref_audio": "nobody"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let j = json(&b);
    assert_eq!(j["success"], false);
    assert!(j["voice_suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "en_man"));
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({"transcript": "x", "chunk_method": "sentence"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(json(&b)["success"], false);
}

#[tokio::test]
async fn generate_takes_the_runpod_job_envelope_like_the_flat_body() {
    let s = default_setup();
    let fields = serde_json::json!({"transcript": "Hello from the envelope.", "temperature": 0,
        "ras_win_len": 0, "max_new_tokens": 20, "seed": 5});
    let (st, _, flat) = call(&s.state, "POST", "/generate", Some(fields.clone())).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&flat));
    let (st, _, env) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({"input": fields, "id": "job-1"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&env));
    let (flat, env) = (json(&flat), json(&env));
    assert_eq!(env["success"], true);
    // Greedy with the same seed: the same audio either way.
    assert_eq!(flat["audio_base64"], env["audio_base64"]);
    assert_eq!(
        env["metadata"]["generation_parameters"]["max_new_tokens"],
        20
    );
    // `health_check: false` is a generation.
    let mut no_check = fields.clone();
    no_check["health_check"] = serde_json::json!(false);
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({ "input": no_check })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["success"], true);
    // Envelope errors say what is wrong, in the /generate failure shape.
    for (body, needle) in [
        (
            serde_json::json!({"input": "Hello"}),
            "`input` must be a JSON object",
        ),
        (
            serde_json::json!({"input": {"transcript": "x"}, "webhook": "https://example.com"}),
            "`webhook` is not a field of the job envelope",
        ),
        (
            serde_json::json!({"input": {"transcript": "x", "temprature": 1}}),
            "temprature",
        ),
        (serde_json::json!({"input": {}}), "transcript"),
        (
            serde_json::json!({"health_check": "yes"}),
            "`health_check` must be true or false",
        ),
        (serde_json::json!(["transcript"]), "must be a JSON object"),
        // S3 key traversal is refused although this server has no S3 configured.
        (
            serde_json::json!({"transcript": "x", "s3_key": "../../etc/passwd"}),
            "`s3_key` is refused",
        ),
        (
            serde_json::json!({"input": {"transcript": "x", "s3_key": "/abs/x.wav"}}),
            "starts with '/'",
        ),
        (
            serde_json::json!({"transcript": "x", "s3_key": "a\\..\\b.wav"}),
            "backslash",
        ),
        (
            serde_json::json!({"transcript": "x", "s3_bucket": "../b", "s3_key": "x.wav"}),
            "`s3_bucket` is refused",
        ),
    ] {
        let (st, _, b) = call(&s.state, "POST", "/generate", Some(body.clone())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        let j = json(&b);
        assert_eq!(j["success"], false, "{j}");
        assert_eq!(j["error_type"], "bad_request", "{j}");
        assert!(j["error"].as_str().unwrap().contains(needle), "{body}: {j}");
    }
}

#[tokio::test]
async fn chat_completions_with_and_without_streaming() {
    let s = default_setup();
    let voice = std::fs::read(higgs_testkit::fixtures_root().join("../voices/en_man.wav")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(voice);
    let body = serde_json::json!({"model": "higgs", "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
        "temperature": 0, "ras_win_len": 0, "max_completion_tokens": 30,
        "messages": [
            {"role": "system", "content": "Generate audio following instruction."},
            {"role": "user", "content": "This is the reference."},
            {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]},
            {"role": "user", "content": "Now say this."}]});
    let (st, _, b) = call(&s.state, "POST", "/v1/chat/completions", Some(body.clone())).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let j = json(&b);
    let data = base64::engine::general_purpose::STANDARD
        .decode(
            j["choices"][0]["message"]["audio"]["data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(
        higgs_audio_io::decode_bytes(&data, &Default::default())
            .unwrap()
            .duration_seconds()
            > 0.0
    );
    assert!(j["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let mut sb = body.clone();
    sb["stream"] = serde_json::json!(true);
    sb["stream_options"] = serde_json::json!({"include_usage": true});
    let (st, ct, b) = call(&s.state, "POST", "/v1/chat/completions", Some(sb)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.unwrap().starts_with("text/event-stream"));
    let text = String::from_utf8(b).unwrap();
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let pcm: usize = datas
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["audio"]["data"].as_str().map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap()
                    .len()
            })
        })
        .sum();
    assert!(pcm > 0 && pcm.is_multiple_of(2));
    // Audio URLs are not fetched (SSRF).
    let mut bad = body;
    bad["messages"][2]["content"] = serde_json::json!([{"type": "audio_url", "audio_url": {"url": "http://169.254.169.254/latest"}}]);
    let (st, _, b) = call(&s.state, "POST", "/v1/chat/completions", Some(bad)).await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&b)
    );
}

#[tokio::test]
async fn voices_crud_and_metadata_routes() {
    let s = default_setup();
    let (st, _, b) = call(&s.state, "GET", "/v1/audio/voices", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(json(&b)["voices"], serde_json::json!(["belinda", "en_man"]));
    let audio = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(higgs_testkit::fixtures_root().join("../voices/vex.wav")).unwrap());
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/voices",
        Some(serde_json::json!({"name": "vex2", "transcript": "Words.", "audio_base64": audio})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    let (_, _, b) = call(&s.state, "GET", "/v1/audio/voices", None).await;
    assert!(json(&b)["voices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "vex2"));
    let (st, _, _) = call(
        &s.state,
        "POST",
        "/v1/audio/voices",
        Some(serde_json::json!({"name": "../x", "transcript": "W", "audio_base64": audio})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = call(
        &s.state,
        "POST",
        "/v1/audio/voices",
        Some(serde_json::json!({"name": "junk", "transcript": "W", "audio_base64": "aGVsbG8="})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _, _) = call(&s.state, "DELETE", "/v1/audio/voices/vex2", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = call(&s.state, "DELETE", "/v1/audio/voices/vex2", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, b) = call(&s.state, "GET", "/health", None).await;
    assert_eq!(st, StatusCode::OK);
    let h = json(&b);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["queue"]["slots"], 4);
    let (_, _, b) = call(&s.state, "GET", "/v1/models", None).await;
    assert_eq!(json(&b)["data"][0]["object"], "model");
    let (_, _, b) = call(&s.state, "GET", "/openapi.json", None).await;
    let o = json(&b);
    for p in [
        "/v1/audio/speech",
        "/v1/chat/completions",
        "/generate",
        "/v1/audio/voices",
        "/health",
    ] {
        assert!(o["paths"][p].is_object(), "{p} in openapi");
    }
}

#[tokio::test]
async fn the_request_timeout_ends_a_long_generation() {
    let s = default_setup();
    let mut state = s.state.clone();
    state.service.config = Arc::new(ServiceConfig {
        request_timeout: Some(std::time::Duration::from_millis(1)),
        ..(*s.state.service.config).clone()
    });
    let (st, _, b) = call(
        &state,
        "POST",
        "/generate",
        Some(serde_json::json!({"transcript": "A generation that cannot finish in a millisecond.", "max_new_tokens": 400})),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let v = json(&b);
    assert_eq!(v["error_type"], "unavailable");
    assert!(v["error"].as_str().unwrap().contains("timed out"), "{v}");
    // The slot is free again for the next request.
    let (st, _, _) = call(
        &s.state,
        "POST",
        "/generate",
        Some(
            serde_json::json!({"transcript": "Now quick.", "max_new_tokens": 30, "temperature": 0}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn health_reports_the_engine_readiness_truthfully() {
    let s = setup_warming(16, None, 40 << 20);
    let engine = s.state.service.engine.clone();
    // Whatever the timing: not ready before = 503 "loading"; ready before = 200 "healthy".
    loop {
        let before = engine.is_ready();
        let (st, _, b) = call(&s.state, "GET", "/health", None).await;
        let after = engine.is_ready();
        let h = json(&b);
        if !after {
            assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{h}");
            assert_eq!(h["status"], "loading");
            let (st, _, _) = call(&s.state, "GET", "/ping", None).await;
            assert_eq!(st, StatusCode::NO_CONTENT);
        }
        if before {
            assert_eq!(st, StatusCode::OK, "{h}");
            assert_eq!(h["status"], "healthy");
            assert_eq!(h["model_info"]["models_loaded"], true);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Every field is there whatever the status.
    let (_, _, b) = call(&s.state, "GET", "/health", None).await;
    let h = json(&b);
    for k in [
        "status",
        "timestamp",
        "model_info",
        "voice_suggestions",
        "model",
        "device",
        "sample_rate",
        "voices_available",
        "queue",
        "memory",
    ] {
        assert!(h.get(k).is_some(), "{k} in {h}");
    }
    // The seed handler's fields, with their types.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((h["timestamp"].as_f64().unwrap() - now).abs() < 60.0, "{h}");
    let info = &h["model_info"];
    assert!(info["model_path"].is_string(), "{h}");
    assert_eq!(info["device"], "cpu");
    assert!(info["models_loaded"].is_boolean(), "{h}");
    assert_eq!(info["voice_prompts_available"], 2);
    let names: Vec<&str> = h["voice_suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!(!v["description"].as_str().unwrap().is_empty(), "{v}");
            v["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["belinda", "en_man"]);
    // `/generate` health checks answer the same report, flat and in the job envelope.
    for body in [
        serde_json::json!({"health_check": true}),
        serde_json::json!({"input": {"health_check": true}}),
    ] {
        let (st, _, b) = call(&s.state, "POST", "/generate", Some(body.clone())).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let g = json(&b);
        assert_eq!(g["status"], "healthy", "{g}");
        assert_eq!(g["model_info"], h["model_info"], "{g}");
        assert_eq!(g["voices_available"], h["voices_available"]);
        assert!(g.get("success").is_none(), "{g}");
    }
    let (st, _, _) = call(&s.state, "GET", "/ping", None).await;
    assert_eq!(st, StatusCode::OK);
    engine.shutdown();
    let (st, _, b) = call(&s.state, "GET", "/health", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&b)["status"], "stopping");
    assert_eq!(json(&b)["model_info"]["models_loaded"], false);
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({"input": {"health_check": true}})),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&b)["status"], "stopping");
    let (st, _, _) = call(&s.state, "GET", "/ping", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

/// Log lines of the whole test binary (the engine logs from its own thread: a global subscriber).
fn captured_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        struct W;
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                captured_log().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sub = tracing_subscriber::fmt()
            .with_env_filter("higgs_service=debug")
            .with_ansi(false)
            .with_writer(|| W)
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        std::sync::Mutex::new(Vec::new())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_come_back_over_real_http_and_reach_the_engine() {
    captured_log();
    let s = default_setup();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(s.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
    };

    // No header: a generated UUID v4, a new one per request.
    let r = http.get(url("/health")).send().await.unwrap();
    let a = id_of(&r).expect("a generated x-request-id");
    assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    let b = id_of(&http.get(url("/health")).send().await.unwrap()).unwrap();
    assert_ne!(a, b);

    // With a header: the same id back, on success, on errors, on a streamed body.
    let given = "test-req-7f3a";
    let r = http
        .get(url("/v1/models"))
        .header("x-request-id", given)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(id_of(&r).as_deref(), Some(given));
    let r = http
        .get(url("/no/such/route"))
        .header("x-request-id", given)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(id_of(&r).as_deref(), Some(given));
    let r = http
        .post(url("/v1/audio/speech"))
        .header("x-request-id", given)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(id_of(&r).as_deref(), Some(given));
    let streamed = "test-req-stream-91c2";
    let r = http
        .post(url("/v1/audio/speech"))
        .header("x-request-id", streamed)
        .header("content-type", "application/json")
        .body(speech(serde_json::json!({"response_format": "pcm"})).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(id_of(&r).as_deref(), Some(streamed));
    assert!(!r.bytes().await.unwrap().is_empty());

    // The id went into the engine request (logged where the service submits it).
    let log = String::from_utf8_lossy(&captured_log().lock().unwrap()).into_owned();
    let line = log
        .lines()
        .find(|l| l.contains("submitted to an engine") && l.contains(streamed))
        .unwrap_or_else(|| panic!("no submit line with the request id in:\n{log}"));
    assert!(line.contains("engine_request="), "{line}");
    assert!(
        line.contains("engine=\"0\""),
        "which engine took it: {line}"
    );
}

#[tokio::test]
async fn one_voice_has_details_and_unknown_names_get_the_most_similar_ones() {
    let s = default_setup();
    let shared = higgs_testkit::fixtures_root().join("../voices");
    let (st, _, b) = call(&s.state, "GET", "/v1/audio/voices/belinda", None).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let d = json(&b);
    let transcript = std::fs::read_to_string(shared.join("belinda.txt")).unwrap();
    assert_eq!(d["name"], "belinda");
    assert_eq!(d["transcript"], transcript.trim());
    let wav = std::fs::read(shared.join("belinda.wav")).unwrap();
    let decoded = higgs_audio_io::decode_bytes(&wav, &Default::default()).unwrap();
    assert!((d["duration_seconds"].as_f64().unwrap() - decoded.duration_seconds()).abs() < 1e-3);
    assert_eq!(d["sample_rate"], decoded.sample_rate);
    assert_eq!(d["channels"], decoded.source_channels);
    assert_eq!(d["bytes"], wav.len());
    assert_eq!(d["format"], "wave");
    // Nothing encoded yet; a request with the voice caches its codes.
    assert_eq!(d["cached_codes"], false);
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/v1/audio/speech",
        Some(speech(
            serde_json::json!({"voice": "belinda", "max_new_tokens": 10, "response_format": "pcm"}),
        )),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let (_, _, b) = call(&s.state, "GET", "/v1/audio/voices/belinda", None).await;
    assert_eq!(json(&b)["cached_codes"], true);

    // Unknown names: 404 with the library's names ranked by similarity, on every door.
    let (st, _, b) = call(&s.state, "GET", "/v1/audio/voices/en_mann", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let e = json(&b);
    assert_eq!(e["error"]["suggestions"][0], "en_man", "{e}");
    let (st, _, b) = call(&s.state, "GET", "/v1/audio/voices/bad.name", None).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({"transcript": "x", "ref_audio": "belindaa"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        json(&b)["voice_suggestions"],
        serde_json::json!(["belinda", "en_man"])
    );
    let (st, _, b) = call(
        &s.state,
        "POST",
        "/generate",
        Some(serde_json::json!({"transcript": "x", "ref_audio": "en_ma"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        json(&b)["voice_suggestions"],
        serde_json::json!(["en_man", "belinda"])
    );
    let (st, _, b) = call(&s.state, "DELETE", "/v1/audio/voices/belindo", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(json(&b)["error"]["suggestions"][0], "belinda");

    // Documented, with every status it answers.
    let (_, _, b) = call(&s.state, "GET", "/openapi.json", None).await;
    let o = json(&b);
    let get = &o["paths"]["/v1/audio/voices/{name}"]["get"];
    for code in ["200", "400", "404", "422"] {
        assert!(get["responses"][code].is_object(), "{code}: {get}");
    }
}

/// A transcript too long for one sequence (1,024 positions here) with a reference voice is split
/// into word chunks by the engine, and the response says so; only a prompt that cannot fit even
/// one word per chunk is a 422.
#[tokio::test]
async fn long_text_is_split_automatically_and_reported() {
    let s = default_setup();
    let text = "the quick brown fox jumps over the lazy dog ".repeat(100);
    let body = serde_json::json!({"transcript": text, "ref_audio": "belinda", "temperature": 0,
        "ras_win_len": 0, "max_new_tokens": 60, "seed": 1});
    let (st, _, b) = call(&s.state, "POST", "/generate", Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let p = &json(&b)["metadata"]["generation_parameters"];
    assert_eq!(p["auto_chunked"], true, "{p}");
    assert_eq!(p["chunk_method"], "word");
    let words = p["chunk_max_word_num"].as_u64().unwrap();
    assert!((1..=200).contains(&words), "{p}");
    assert!(
        p["chunks_processed"].as_u64().unwrap() >= 900u64.div_ceil(words),
        "{p}"
    );
    // A short text stays one piece.
    let body = serde_json::json!({"transcript": "Short.", "ref_audio": "belinda", "temperature": 0,
        "ras_win_len": 0, "max_new_tokens": 20});
    let (st, _, b) = call(&s.state, "POST", "/generate", Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let p = &json(&b)["metadata"]["generation_parameters"];
    assert_eq!(
        (p["auto_chunked"].clone(), p["chunk_method"].clone()),
        (false.into(), "none".into())
    );
    // The reference voice plus 1,000 new tokens cannot fit 1,024 positions at any chunk size.
    let body =
        serde_json::json!({"transcript": text, "ref_audio": "belinda", "max_new_tokens": 1000});
    let (st, _, b) = call(&s.state, "POST", "/generate", Some(body)).await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let e = json(&b)["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("one word per chunk") && e.contains("1024"),
        "{e}"
    );
}
