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
            engine: higgs_engine::EnginePool::single(engine, "cpu"),
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

fn speech(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"model": "tts-1", "input": "Hello there, a short test.", "voice": "alloy",
        "temperature": 0.0, "ras_win_len": 0, "max_new_tokens": 30});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The chunks of a RIFF file after `RIFF....WAVE`: (id, declared size, offset of its payload).
fn riff_chunks(b: &[u8]) -> Vec<(String, u32, usize)> {
    let mut out = Vec::new();
    let mut at = 12;
    while at + 8 <= b.len() {
        let id = String::from_utf8_lossy(&b[at..at + 4]).to_string();
        let size = u32_at(b, at + 4);
        out.push((id, size, at + 8));
        at = at
            .saturating_add(8)
            .saturating_add(size as usize + (size as usize & 1));
    }
    out
}

#[tokio::test]
async fn unstreamed_wav_and_flac_are_whole_files_with_true_sizes() {
    let s = setup();
    // Greedy decoding: the same request gives the same samples in every format. PCM (streamed,
    // no header) is the reference sample count.
    let pcm = post(
        &s.state,
        "/v1/audio/speech",
        speech(serde_json::json!({"response_format": "pcm"})),
    )
    .await;
    assert_eq!(pcm.status, StatusCode::OK);
    assert!(
        pcm.headers.get("content-length").is_none(),
        "pcm streams (chunked)"
    );
    let samples = pcm.body.len() / 2;
    assert!(samples > 0 && pcm.body.len().is_multiple_of(2));

    let wav = post(
        &s.state,
        "/v1/audio/speech",
        speech(serde_json::json!({"response_format": "wav"})),
    )
    .await;
    assert_eq!(
        wav.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&wav.body)
    );
    assert_eq!(wav.headers["content-type"], "audio/wav");
    let b = &wav.body;
    assert_eq!(
        wav.headers["content-length"].to_str().unwrap(),
        b.len().to_string()
    );
    // What Python's `wave` reads: RIFF size = file length - 8, `fmt ` 16-bit mono, the `data`
    // size = samples * 2, so nframes = data size / (channels * sample width) = samples.
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    assert_eq!(u32_at(b, 4) as usize, b.len() - 8);
    let chunks = riff_chunks(b);
    let (_, fmt_size, fmt_at) = chunks.iter().find(|c| c.0 == "fmt ").unwrap().clone();
    assert!(fmt_size >= 16);
    let channels = u16::from_le_bytes([b[fmt_at + 2], b[fmt_at + 3]]);
    let rate = u32_at(b, fmt_at + 4);
    let bits = u16::from_le_bytes([b[fmt_at + 14], b[fmt_at + 15]]);
    assert_eq!((channels, rate, bits), (1, 24000, 16));
    let (_, data_size, data_at) = chunks.iter().find(|c| c.0 == "data").unwrap().clone();
    assert_eq!(data_size as usize, samples * 2);
    let nframes = data_size as usize / (usize::from(channels) * usize::from(bits / 8));
    assert_eq!(nframes, samples);
    assert_eq!(
        data_at + data_size as usize,
        b.len(),
        "the data chunk ends the file"
    );
    assert_eq!(
        &b[data_at..],
        &pcm.body[..],
        "the same samples as the pcm response"
    );

    // FLAC: STREAMINFO carries the total sample count (36 bits after rate/channels/bits).
    let flac = post(
        &s.state,
        "/v1/audio/speech",
        speech(serde_json::json!({"response_format": "flac"})),
    )
    .await;
    assert_eq!(flac.status, StatusCode::OK);
    let f = &flac.body;
    assert_eq!(
        flac.headers["content-length"].to_str().unwrap(),
        f.len().to_string()
    );
    assert_eq!(&f[0..4], b"fLaC");
    assert_eq!(f[4] & 0x7f, 0, "STREAMINFO is the first metadata block");
    let si = &f[8..8 + 34];
    let packed = u64::from_be_bytes(si[10..18].try_into().unwrap());
    let total = (packed & ((1u64 << 36) - 1)) as usize;
    let flac_rate = (packed >> 44) as u32;
    assert_eq!(flac_rate, 24000);
    assert_eq!(total, samples, "FLAC total samples");
    assert!(
        si[18..34].iter().any(|&x| x != 0),
        "the MD5 of the audio is set"
    );

    // Asked to stream, WAV goes out chunked as generated with "unknown" sizes (as OpenAI
    // streams it), and no Content-Length.
    let st = post(
        &s.state,
        "/v1/audio/speech",
        speech(serde_json::json!({"response_format": "wav", "stream": true})),
    )
    .await;
    assert_eq!(st.status, StatusCode::OK);
    assert!(st.headers.get("content-length").is_none());
    assert_eq!(u32_at(&st.body, 4), u32::MAX);
    assert_eq!(&st.body[44..], &pcm.body[..]);
    // And any format can be asked for whole: mp3 then has its exact length.
    let mp3 = post(
        &s.state,
        "/v1/audio/speech",
        speech(serde_json::json!({"response_format": "mp3", "stream": false})),
    )
    .await;
    assert_eq!(mp3.status, StatusCode::OK);
    assert_eq!(
        mp3.headers["content-length"].to_str().unwrap(),
        mp3.body.len().to_string()
    );
    let decoded = higgs_audio_io::decode_bytes(&mp3.body, &Default::default()).unwrap();
    assert!(decoded.duration_seconds() > 0.0);
}

/// The 16-bit samples of a whole WAV's `data` chunk (after checking its sizes are true).
fn wav_samples(r: &Reply) -> Vec<i16> {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["content-type"], "audio/wav");
    let b = &r.body;
    assert_eq!(u32_at(b, 4) as usize, b.len() - 8, "RIFF size");
    let (_, size, at) = riff_chunks(b).into_iter().find(|c| c.0 == "data").unwrap();
    assert_eq!(at + size as usize, b.len(), "data size");
    pcm_samples(&b[at..])
}

fn pcm_samples(b: &[u8]) -> Vec<i16> {
    assert!(b.len().is_multiple_of(2));
    b.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// `speed` (issue 15) is honoured by a pitch-preserving time stretch: the same greedy, seeded
/// request at speed 2 is half as long as at speed 1, and at 1.5 every way of sending the audio
/// (whole WAV, streamed PCM, SSE deltas) carries the same samples; out of range is a 400.
#[tokio::test]
async fn speed_time_stretches_every_response_the_same_way() {
    let s = setup();
    // Greedy (the tiny model then ends after 0.16 s), and seeded sampling for 3 s of audio that
    // arrives in many decode windows, so the stream is stretched across many pushes.
    for (what, base) in [
        ("greedy", serde_json::json!({"seed": 11})),
        (
            "seeded",
            serde_json::json!({"seed": 11, "temperature": 1.0, "max_new_tokens": 200}),
        ),
    ] {
        check_speed(&s, what, base).await;
    }
    for bad in [0.2, 4.5, 5.0] {
        let r = post(
            &s.state,
            "/v1/audio/speech",
            speech(serde_json::json!({"speed": bad, "response_format": "wav"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        let j = json(&r.body);
        assert_eq!(j["error"]["param"], "speed", "{bad}");
        assert!(
            j["error"]["message"]
                .as_str()
                .unwrap()
                .contains("[0.25, 4.0]"),
            "{j}"
        );
    }
}

async fn check_speed(s: &Setup, what: &str, base: serde_json::Value) {
    let at = |speed: f64, extra: serde_json::Value| {
        let mut v = speech(base.clone());
        v["speed"] = speed.into();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let wav = |speed: f64| at(speed, serde_json::json!({"response_format": "wav"}));
    let natural = wav_samples(&post(&s.state, "/v1/audio/speech", wav(1.0)).await);
    let n = natural.len();
    assert!(n >= 3840, "{what}: {n} samples at speed 1");
    // Speed 1 is the generated audio itself: the same as omitting `speed`.
    let mut omitted = wav(1.0);
    omitted.as_object_mut().unwrap().remove("speed");
    assert_eq!(
        wav_samples(&post(&s.state, "/v1/audio/speech", omitted).await),
        natural,
        "{what}"
    );

    let double = wav_samples(&post(&s.state, "/v1/audio/speech", wav(2.0)).await);
    let ratio = double.len() as f64 / n as f64;
    eprintln!(
        "{what}: speed 2: {n} -> {} samples (ratio {ratio:.4})",
        double.len()
    );
    assert!(
        (ratio - 0.5).abs() <= 0.5 * 0.05,
        "{what}: speed 2: ratio {ratio}"
    );
    assert_ne!(&natural[..double.len()], &double[..], "{what}: not a cut");

    let wav15 = wav_samples(&post(&s.state, "/v1/audio/speech", wav(1.5)).await);
    eprintln!("{what}: speed 1.5: {n} -> {} samples", wav15.len());
    assert_eq!(wav15.len(), (n as f64 / 1.5).round() as usize, "{what}");
    let pcm = post(
        &s.state,
        "/v1/audio/speech",
        at(1.5, serde_json::json!({"response_format": "pcm"})),
    )
    .await;
    assert_eq!(pcm.status, StatusCode::OK);
    assert!(
        pcm.headers.get("content-length").is_none(),
        "pcm still streams"
    );
    assert_eq!(
        pcm_samples(&pcm.body),
        wav15,
        "{what}: streamed pcm = whole wav at 1.5"
    );

    let sse = post(
        &s.state,
        "/v1/audio/speech",
        at(
            1.5,
            serde_json::json!({"response_format": "pcm", "stream_format": "sse"}),
        ),
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    let mut bytes = Vec::new();
    let (mut deltas, mut done) = (0, false);
    for line in String::from_utf8(sse.body).unwrap().lines() {
        let Some(d) = line.strip_prefix("data: ") else {
            continue;
        };
        let ev: serde_json::Value = serde_json::from_str(d).unwrap();
        match ev["type"].as_str().unwrap() {
            "speech.audio.delta" => {
                use base64::Engine;
                deltas += 1;
                bytes.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(ev["audio"].as_str().unwrap())
                        .unwrap(),
                );
            }
            "speech.audio.done" => done = true,
            other => panic!("unexpected event {other}: {ev}"),
        }
    }
    eprintln!("{what}: speed 1.5 over SSE: {deltas} deltas");
    assert!(done);
    assert_eq!(
        pcm_samples(&bytes),
        wav15,
        "{what}: SSE deltas = whole wav at 1.5"
    );

    // FLAC's STREAMINFO counts the stretched samples too.
    let flac = post(
        &s.state,
        "/v1/audio/speech",
        at(1.5, serde_json::json!({"response_format": "flac"})),
    )
    .await;
    assert_eq!(flac.status, StatusCode::OK);
    let packed = u64::from_be_bytes(flac.body[18..26].try_into().unwrap());
    assert_eq!(
        (packed & ((1u64 << 36) - 1)) as usize,
        wav15.len(),
        "{what}"
    );
}
