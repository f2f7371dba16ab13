//! The RunPod worker's OpenAI passthrough over the HTTP server's real router — wired as the CLI
//! wires it (the worker crate does not depend on the server, so this test lives here): audio,
//! SSE, models, and the server's errors carried into the job error.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use candle_core::{DType, Device};
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{start, EngineConfig, EngineParts};
use higgs_service::{Service, ServiceConfig};
use higgs_testkit::fixture;
use higgs_worker::{Job, JobContext, Outcome};
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn context(voices: &std::path::Path) -> JobContext {
    let shared = higgs_testkit::fixtures_root().join("../voices");
    for ext in ["wav", "txt"] {
        std::fs::copy(
            shared.join(format!("belinda.{ext}")),
            voices.join(format!("belinda.{ext}")),
        )
        .unwrap();
    }
    let parts = EngineParts {
        model: higgs_model::HiggsAudioModel::load(&fixture("llm"), DType::F32, &Device::Cpu)
            .unwrap(),
        codec: higgs_codec::Codec::load(&fixture("codec"), &Device::Cpu).unwrap(),
        tokenizer: higgs_text::TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: Some(std::sync::Arc::new(VoiceLibrary::open(voices).unwrap())),
    };
    let cfg = EngineConfig {
        max_running: 4,
        max_seq_len: 1024,
        max_queue: 16,
        ..Default::default()
    };
    let (engine, _) = start(cfg, parts).unwrap();
    let service = Service {
        engine: higgs_engine::EnginePool::single(engine, "cpu"),
        voices: Some(Arc::new(VoiceLibrary::open(voices).unwrap())),
        config: Arc::new(ServiceConfig::default()),
        device: "cpu".into(),
        uploader: None,
    };
    let openai = higgs_server::app(higgs_server::AppState {
        service: service.clone(),
        config: Arc::new(higgs_server::ServerConfig::default()),
        metrics: None,
    });
    JobContext::new(service, openai, 15 << 20)
}

/// Runs one job; returns its outcome and the partials it streamed.
async fn run(ctx: &JobContext, input: Value) -> (Outcome, Vec<Value>) {
    let job: Job = serde_json::from_value(json!({"id": "job-1", "input": input})).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (o, partials) = tokio::join!(ctx.execute(&job, tx), async {
        let mut v = Vec::new();
        while let Some(p) = rx.recv().await {
            v.push(p);
        }
        v
    });
    (o, partials)
}

fn output(o: Outcome) -> Value {
    match o {
        Outcome::Output(v) => v,
        Outcome::Error(e) => panic!("the job failed: {e}"),
    }
}

fn error_of(o: Outcome) -> Value {
    match o {
        Outcome::Error(e) => serde_json::from_str(&e).unwrap(),
        Outcome::Output(v) => panic!("the job succeeded: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_passthrough_answers_like_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    assert!(ctx.service.engine.wait_ready(Duration::from_secs(120)));

    let (o, _) = run(&ctx, json!({"openai_route": "/v1/audio/speech", "openai_input": {"model": "tts-1", "input": "Hi there.", "voice": "alloy", "response_format": "wav", "temperature": 0.0, "max_new_tokens": 20}})).await;
    let sp = output(o);
    assert_eq!(sp["content_type"], "audio/wav");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sp["data_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let d = higgs_audio_io::decode_bytes(&bytes, &Default::default()).unwrap();
    assert_eq!(d.sample_rate, 24_000);
    assert!(!d.samples.is_empty());

    let (o, partials) = run(&ctx, json!({"openai_route": "/v1/chat/completions", "openai_input": {"model": "higgs", "stream": true, "modalities": ["text", "audio"], "audio": {"voice": "belinda", "format": "pcm16"}, "messages": [{"role": "user", "content": "Say hi."}], "max_completion_tokens": 20, "temperature": 0.0}})).await;
    let c = output(o);
    let events = c.as_array().unwrap();
    assert!(events.len() >= 2);
    assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
    assert_eq!(
        partials.len(),
        events.len(),
        "every SSE event is streamed too"
    );

    let (o, _) = run(&ctx, json!({"openai_route": "/v1/models"})).await;
    assert!(output(o)["data"].is_array());

    let (o, _) = run(
        &ctx,
        json!({"openai_route": "/v1/embeddings", "openai_input": {}}),
    )
    .await;
    let e = error_of(o);
    assert_eq!(e["status"], 404);
    assert!(e["error_message"]
        .as_str()
        .unwrap()
        .contains("/v1/audio/speech"));

    let (o, _) = run(&ctx, json!({"openai_route": "/v1/audio/speech", "openai_input": {"model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": 5.0}})).await;
    let e = error_of(o);
    assert_eq!(e["status"], 400);
    assert_eq!(e["param"], "speed");
}
