//! The serving engine on the fixture model and codec: real batching (one forward per step),
//! batched = alone, streaming = one-shot decode, cancellation, queue-full refusal, deadlines and
//! failing requests that do not disturb the others.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::time::Duration;

use candle_core::DType;
use higgs_codec::Codec;
mod common;
use common::reference::generate;
use higgs_engine::prompt::{expand_prompt, PromptSpec};
use higgs_engine::{
    start, ClipInput, EngineConfig, EngineHandle, EngineParts, Event, GenerateRequest,
    GenerationError, GenerationParams, Prompting, RasParams, RequestStream, SamplingParams,
    SubmitError,
};
use higgs_model::HiggsAudioModel;
use higgs_testkit::fixture;
use higgs_text::{generation_prompt, GenerationSuffix, Message, Role, TextTokenizer};

fn parts() -> EngineParts {
    EngineParts {
        model: HiggsAudioModel::load(&fixture("llm"), DType::F32, &higgs_testkit::test_device())
            .unwrap(),
        codec: Codec::load(&fixture("codec"), &higgs_testkit::test_device()).unwrap(),
        tokenizer: TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: None,
    }
}

fn engine(max_running: usize, max_queue: usize) -> EngineHandle {
    let cfg = EngineConfig {
        max_running,
        max_seq_len: 256,
        max_queue,
        prefill_budget: 64,
        ..Default::default()
    };
    let h = start(cfg, parts()).unwrap().0;
    // On a GPU this includes the warm-up (graph capture, kernel loading); on the CPU it is none.
    assert!(
        h.wait_ready(std::time::Duration::from_secs(300)),
        "engine never became ready"
    );
    h
}

const TEXTS: [&str; 8] = [
    "Hello there.",
    "The sun rises in the east and sets in the west.",
    "A short one.",
    "Welcome back to Tech Talk Tuesdays, everyone!",
    "Numbers like three and four.",
    "I would imagine so.",
    "Quiet room, calm voice, slow pace.",
    "Last request of the batch.",
];

fn messages(text: &str) -> Vec<Message> {
    vec![
        Message::text(Role::System, "Generate audio following instruction.\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n<|scene_desc_end|>"),
        Message::text(Role::User, text),
    ]
}

fn request(i: usize) -> GenerateRequest {
    GenerateRequest {
        prompting: Prompting::Messages {
            messages: messages(TEXTS[i % TEXTS.len()]),
            clips: vec![],
        },
        params: GenerationParams {
            sampling: SamplingParams::GREEDY,
            ras: RasParams::OFF,
            max_new_tokens: 20 + 5 * (i % 5),
            seed: Some(1),
            ignore_eos: false,
        },
        force_audio: true,
        timeout: None,
        request_id: None,
    }
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    text: Vec<u32>,
    audio: Vec<f32>,
    frames: usize,
    error: Option<GenerationError>,
    finished: bool,
    prompt_tokens: usize,
}

fn collect(s: RequestStream) -> Outcome {
    collect_into(s, Outcome::default())
}

fn collect_into(mut s: RequestStream, mut o: Outcome) -> Outcome {
    while let Some(e) = s.next_blocking() {
        match e {
            Event::Text { ids, .. } => o.text.extend(ids),
            Event::Audio {
                samples,
                start_frame,
                frames,
            } => {
                assert_eq!(start_frame, o.frames, "audio chunks arrive in order");
                o.audio.extend(samples);
                o.frames += frames;
            }
            Event::Finished { usage, .. } => {
                assert_eq!(usage.audio_frames, o.frames);
                o.prompt_tokens = usage.prompt_tokens;
                o.finished = true;
            }
            Event::Failed(e) => o.error = Some(e),
            Event::Started { .. } | Event::Chunk { .. } => {}
        }
    }
    o
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The reference loop (single request, one-shot decode) for request `i`.
fn reference(p: &EngineParts, i: usize) -> (Vec<f32>, usize) {
    let req = request(i);
    let Prompting::Messages { messages, .. } = &req.prompting else {
        unreachable!()
    };
    let prompt =
        generation_prompt(&p.tokenizer, messages, GenerationSuffix::AssistantAudio).unwrap();
    let spec = PromptSpec {
        ids: prompt.ids,
        clips: vec![],
        audio_in_as_codes: true,
    };
    let e = expand_prompt(p.model.config(), &spec).unwrap();
    let mut cache = p.model.new_cache(1, 256).unwrap();
    let stop = vec![128001, 128009];
    let out = generate(&p.model, &mut cache, 0, &e, &req.params, stop, |_| {}).unwrap();
    let codes = out.codes(p.model.config().num_codebooks);
    (p.codec.decode_codes(&codes).unwrap(), codes.frames())
}

#[test]
fn batched_requests_equal_alone_and_streaming_equals_one_shot_decode() {
    let p = parts();
    let batched = engine(8, 64);
    // Four start together; four join while the first ones are running.
    let mut streams: Vec<RequestStream> = (0..4)
        .map(|i| batched.submit(request(i)).unwrap())
        .collect();
    // Read request 0 up to its first audio chunk, then let four more requests join.
    let mut first = streams.remove(0);
    let mut o0 = Outcome::default();
    while let Some(e) = first.next_blocking() {
        match e {
            Event::Text { ids, .. } => o0.text.extend(ids),
            Event::Audio {
                samples, frames, ..
            } => {
                o0.audio.extend(samples);
                o0.frames += frames;
                break;
            }
            _ => {}
        }
    }
    streams.extend((4..8).map(|i| batched.submit(request(i)).unwrap()));
    let mut handles = vec![std::thread::spawn(move || collect_into(first, o0))];
    handles.extend(
        streams
            .into_iter()
            .map(|s| std::thread::spawn(move || collect(s))),
    );
    let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let stats = batched.stats();
    let max_batch = *stats.batch_sizes.keys().max().unwrap();
    assert!(
        max_batch >= 5,
        "sequences were batched: {:?}",
        stats.batch_sizes
    );
    let steps_alone: u64 = (0..8)
        .map(|i| request(i).params.max_new_tokens as u64)
        .sum();
    // Every prompt position went through a prefill forward, counted apart (bench's timeline).
    let prompts: usize = outcomes.iter().map(|o| o.prompt_tokens).sum();
    assert_eq!(stats.prefill_positions, prompts as u64);
    assert!(stats.prefill_forward_calls >= 1 && stats.prefill_forward_calls < stats.forward_calls);
    assert!(stats.prefill_forward_seconds > 0.0);
    assert!(stats.prefill_forward_seconds <= stats.forward_seconds);
    assert!(
        stats.forward_calls < steps_alone,
        "one forward serves many sequences: {} calls",
        stats.forward_calls
    );

    let alone = engine(1, 64);
    for (i, o) in outcomes.iter().enumerate() {
        assert!(o.finished && o.error.is_none(), "request {i}: {o:?}");
        let a = collect(alone.submit(request(i)).unwrap());
        assert_eq!(o.text, a.text, "request {i}: text tokens batched vs alone");
        assert_eq!(o.frames, a.frames, "request {i}: frames batched vs alone");
        assert!(
            max_diff(&o.audio, &a.audio) <= 1e-4,
            "request {i}: audio batched vs alone"
        );
        // Streamed chunks equal the reference loop's codes decoded in one call.
        let (wav, frames) = reference(&p, i);
        assert_eq!(o.frames, frames, "request {i}: frames vs reference loop");
        assert!(
            max_diff(&o.audio, &wav) <= higgs_codec::streaming::STREAMING_TOLERANCE,
            "request {i}: streamed vs one-shot"
        );
    }
    let s = batched.stats();
    assert_eq!(
        (s.running, s.queued, s.kv_positions_used),
        (0, 0, 0),
        "all slots freed"
    );
}

#[test]
fn cancellation_deadline_and_bad_voice_do_not_disturb_others() {
    let e = engine(4, 16);
    let keep = e.submit(request(1)).unwrap();
    let mut dropped = e.submit(request(3)).unwrap();
    let cancelled = e.submit(request(4)).unwrap();
    let mut late = request(2);
    late.timeout = Some(Duration::from_millis(1));
    let timed_out = e.submit(late).unwrap();
    let mut bad = request(5);
    bad.prompting = Prompting::Messages {
        messages: vec![
            Message::new(
                Role::Assistant,
                vec![higgs_text::Content::Audio(higgs_text::AudioRef(0))],
            ),
            Message::text(Role::User, "x"),
        ],
        clips: vec![ClipInput::Voice("nobody".into())],
    };
    let bad = e.submit(bad).unwrap();
    // Drop one after its first event, cancel another explicitly.
    let _ = dropped.next_blocking();
    drop(dropped);
    cancelled.cancel();
    let kept = collect(keep);
    assert!(kept.finished && kept.error.is_none());
    let alone = collect(engine(1, 4).submit(request(1)).unwrap());
    assert_eq!(kept.text, alone.text);
    assert!(max_diff(&kept.audio, &alone.audio) <= 1e-4);
    assert!(matches!(
        collect(timed_out).error,
        Some(GenerationError::Timeout(_))
    ));
    let b = collect(bad);
    assert!(
        matches!(b.error, Some(GenerationError::UnknownVoice { .. })),
        "{b:?}"
    );
    let c = collect(cancelled);
    assert!(!c.finished);
    // Slots come back.
    std::thread::sleep(Duration::from_millis(200));
    let s = e.stats();
    assert_eq!(s.running, 0, "{s:?}");
    assert_eq!(s.queued, 0, "{s:?}");
    assert!(s.requests_cancelled >= 2, "{s:?}");
    // The timeout and the unknown voice (failed while being prepared) are failures.
    assert!(s.requests_failed >= 2, "{s:?}");
    assert!(s.requests_finished >= 1, "{s:?}");
    // Every ended request gave its queue place back: the queue takes a full load again.
    let again: Vec<RequestStream> = (0..16).map(|i| e.submit(request(i)).unwrap()).collect();
    drop(again);
}

#[test]
fn full_queue_is_refused_at_once() {
    let e = engine(1, 1);
    let mut running = e.submit(request(1)).unwrap();
    assert!(matches!(
        running.next_blocking(),
        Some(Event::Started { .. })
    ));
    let _queued = e.submit(request(2)).unwrap();
    match e.submit(request(3)) {
        Err(SubmitError::Overloaded { limit, .. }) => assert_eq!(limit, 1),
        Err(other) => panic!("expected Overloaded, got {other}"),
        Ok(_) => panic!("expected Overloaded, got a stream"),
    }
    let r = collect(running);
    assert!(r.finished);
}

#[test]
fn too_long_requests_fail_with_a_clear_error() {
    let e = engine(1, 4);
    let mut r = request(0);
    r.params.max_new_tokens = 10_000;
    let o = collect(e.submit(r).unwrap());
    match o.error {
        Some(GenerationError::InvalidRequest(m)) => assert!(m.contains("max_new_tokens"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Streamed chunks grow: `first_chunk_frames`, then `chunk_frames` doubling up to
/// `max_chunk_frames`; the audio still equals the one-shot decode of the same codes.
#[test]
fn streamed_chunks_grow_and_stay_exact() {
    let p = parts();
    let cfg = EngineConfig {
        max_running: 1,
        max_seq_len: 256,
        max_queue: 4,
        prefill_budget: 64,
        first_chunk_frames: 2,
        chunk_frames: 3,
        max_chunk_frames: 8,
        ..Default::default()
    };
    assert_eq!(
        (0..6).map(|k| cfg.chunk_size(k)).collect::<Vec<_>>(),
        vec![2, 3, 6, 8, 8, 8]
    );
    let h = start(cfg.clone(), parts()).unwrap().0;
    let mut req = request(3);
    req.params.max_new_tokens = 40;
    req.params.ignore_eos = true;
    let mut s = h.submit(req.clone()).unwrap();
    let (mut sizes, mut audio) = (Vec::new(), Vec::new());
    while let Some(e) = s.next_blocking() {
        match e {
            Event::Audio {
                samples, frames, ..
            } => {
                sizes.push(frames);
                audio.extend(samples);
            }
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    let total: usize = sizes.iter().sum();
    assert!(sizes.len() >= 4, "{sizes:?}");
    for (k, &n) in sizes.iter().enumerate().take(sizes.len() - 1) {
        assert_eq!(n, cfg.chunk_size(k), "chunk {k} of {sizes:?}");
    }
    assert!(sizes[sizes.len() - 1] <= cfg.chunk_size(sizes.len() - 1));
    // The same codes decoded in one call (a fixed-chunk engine gives the reference codes).
    let fixed = EngineConfig {
        max_chunk_frames: 1000,
        chunk_frames: 1000,
        ..cfg
    };
    let h2 = start(fixed, p).unwrap().0;
    let o = collect(h2.submit(req).unwrap());
    assert_eq!(o.frames, total);
    assert!(
        max_diff(&audio, &o.audio) <= higgs_codec::streaming::STREAMING_TOLERANCE,
        "growing chunks vs one window"
    );
}

/// `n` requests through an engine with `cfg`'s audio settings (4 slots, 8 queued).
fn outcomes(n: usize, set: impl FnOnce(&mut EngineConfig)) -> Vec<Outcome> {
    let mut cfg = EngineConfig {
        max_running: 4,
        max_seq_len: 256,
        max_queue: 8,
        prefill_budget: 64,
        ..Default::default()
    };
    set(&mut cfg);
    let h = start(cfg, parts()).unwrap().0;
    let streams: Vec<RequestStream> = (0..n).map(|i| h.submit(request(i)).unwrap()).collect();
    let outs: Vec<Outcome> = streams.into_iter().map(collect).collect();
    h.shutdown();
    outs
}

/// Same text and frames, audio within the streaming tolerance (decode batches may group
/// differently, so not bit-equal).
fn assert_same_outcomes(a: &[Outcome], b: &[Outcome]) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.finished && y.finished, "request {i}: {x:?} / {y:?}");
        assert_eq!(x.text, y.text, "request {i}");
        assert_eq!(x.frames, y.frames, "request {i}");
        assert!(x.frames > 0);
        assert!(
            max_diff(&x.audio, &y.audio) <= higgs_codec::streaming::STREAMING_TOLERANCE,
            "request {i}"
        );
    }
}

#[test]
fn audio_thread_and_inline_decoding_deliver_the_same_events() {
    let threaded = outcomes(4, |c| c.codec_thread = Some(true));
    let inline = outcomes(4, |c| c.codec_thread = Some(false));
    assert_same_outcomes(&threaded, &inline);
}

#[test]
fn layer_streaming_delivers_the_windows_audio() {
    // `EngineConfig::layer_streaming`: each request's decoder layers keep their inputs in a
    // pool row of the audio worker instead of re-decoding context frames; concurrent requests
    // (steps batched across them, more requests than slots) get the same text, frames and
    // audio as with windows.
    let layers = outcomes(6, |c| c.layer_streaming = true);
    let windows = outcomes(6, |_| {});
    assert_same_outcomes(&layers, &windows);
}

/// Sampled requests that may leave audio by EOS and go on in text mode (the HTTP case that
/// failed on the GPU): the text tokens of a step are sampled together, yet each request's text
/// and audio equal the same request alone (its own RNG), and none fails.
#[test]
fn sampled_text_steps_batched_equal_alone() {
    let sampled = |i: usize| {
        let mut r = request(i);
        r.params.sampling = SamplingParams {
            temperature: 1.0,
            top_k: Some(50),
            top_p: 0.95,
        };
        r.params.seed = Some(100 + i as u64);
        r.params.max_new_tokens = 60;
        // Without forced audio the model starts in text mode: every request has text steps.
        r.force_audio = false;
        r
    };
    let batched = engine(6, 64);
    let streams: Vec<RequestStream> = (0..6)
        .map(|i| batched.submit(sampled(i)).unwrap())
        .collect();
    let outcomes: Vec<Outcome> = streams
        .into_iter()
        .map(|s| std::thread::spawn(move || collect(s)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let alone = engine(1, 64);
    let mut text_tokens = 0;
    for (i, o) in outcomes.iter().enumerate() {
        let a = collect(alone.submit(sampled(i)).unwrap());
        assert_eq!(o.text, a.text, "request {i}: text batched = alone");
        assert_eq!(o.frames, a.frames, "request {i}: frames");
        assert_eq!(o.error, a.error, "request {i}: outcome");
        if o.frames > 0 {
            assert!(max_diff(&o.audio, &a.audio) < 1e-4, "request {i}: audio");
        }
        text_tokens += o.text.len();
    }
    assert!(text_tokens > 0, "the requests sampled text tokens");
}

#[test]
fn a_burst_of_max_running_plus_max_queue_is_all_accepted() {
    // Free slots count before the queue limit: 2 slots + 2 queue places take a burst of 4.
    let e = engine(2, 2);
    let burst: Vec<RequestStream> = (0..4)
        .map(|i| {
            e.submit(request(i))
                .unwrap_or_else(|err| panic!("request {i} of the burst refused: {err}"))
        })
        .collect();
    match e.submit(request(4)) {
        Err(SubmitError::Overloaded { limit, .. }) => assert_eq!(limit, 2),
        Err(other) => panic!("expected Overloaded, got {other}"),
        Ok(_) => panic!("the 5th request of a 2 + 2 engine was accepted"),
    }
    for s in burst {
        assert!(collect(s).finished);
    }
    // Every place is given back: the same burst is accepted again.
    let again: Vec<RequestStream> = (0..4).map(|i| e.submit(request(i)).unwrap()).collect();
    for s in again {
        assert!(collect(s).finished);
    }
}

#[test]
fn cancelled_queued_requests_are_counted_as_cancelled() {
    let e = engine(1, 4);
    let mut running = e.submit(request(1)).unwrap();
    assert!(matches!(
        running.next_blocking(),
        Some(Event::Started { .. })
    ));
    // Two requests wait behind it; one is cancelled, the other's client goes away.
    let cancelled = e.submit(request(2)).unwrap();
    let dropped = e.submit(request(3)).unwrap();
    cancelled.cancel();
    drop(dropped);
    let r = collect(running);
    assert!(r.finished);
    let c = collect(cancelled);
    assert!(!c.finished && c.error.is_none(), "{c:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Stats are published after each loop turn: wait for the one with both ends in it.
        let s = e.stats();
        if s.requests_cancelled == 2 && s.requests_finished == 1 {
            assert_eq!(s.requests_failed, 0, "{s:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queued cancellations not counted: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn script(
    transcript: &str,
    chunking: higgs_text::ChunkConfig,
    max_new_tokens: usize,
) -> GenerateRequest {
    let mut r = request(0);
    r.prompting = Prompting::Script {
        transcript: transcript.into(),
        voices: vec![],
        uploads: vec![],
        scene_prompt: None,
        ref_audio_in_system_message: false,
        chunking,
        chunk_buffer_size: None,
    };
    r.params.max_new_tokens = max_new_tokens;
    r
}

/// `(audio, usage)` of a request that must finish.
fn finish(mut s: RequestStream) -> (Vec<f32>, higgs_engine::Usage) {
    let mut audio = Vec::new();
    let mut usage = None;
    while let Some(e) = s.next_blocking() {
        match e {
            Event::Audio { samples, .. } => audio.extend(samples),
            Event::Finished { usage: u, .. } => usage = Some(u),
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    (audio, usage.unwrap())
}

/// A text that does not fit the sequence limit in one piece is split into word chunks by the
/// engine, exactly as if the caller had asked for `chunk_method word` with that size; later
/// chunks drop the oldest carried chunk from their context when it would not fit.
#[test]
fn too_long_text_is_split_into_word_chunks_that_fit() {
    let e = engine(1, 4);
    let text = "the quick brown fox jumps over the lazy dog ".repeat(10);
    let (audio, usage) = finish(e.submit(script(&text, Default::default(), 150)).unwrap());
    let n = usage.auto_chunk_words.expect("the engine split the text");
    assert!(n < 90, "{n} words per chunk");
    assert!(usage.chunks >= 90usize.div_ceil(n), "{usage:?}");
    assert!(!audio.is_empty());
    // Every chunk's audio is longer than the room left beside two chunks' text: each later
    // chunk drops the one before it from its context.
    assert_eq!(usage.context_chunks_dropped, usage.chunks - 1, "{usage:?}");
    // The same chunks asked for explicitly give the same audio.
    let explicit = higgs_text::ChunkConfig {
        method: higgs_text::ChunkMethod::Word,
        max_word_num: n,
        ..Default::default()
    };
    let (same, u) = finish(e.submit(script(&text, explicit, 150)).unwrap());
    assert_eq!(u.auto_chunk_words, None);
    assert_eq!(u.chunks, usage.chunks);
    assert_eq!(u.context_chunks_dropped, usage.context_chunks_dropped);
    assert_eq!(same, audio);
    // A text that fits is never split.
    let (_, u) = finish(
        e.submit(script("A short one.", Default::default(), 20))
            .unwrap(),
    );
    assert_eq!((u.auto_chunk_words, u.chunks), (None, 1));
}

/// Only a chunk that cannot fit even with one word is refused, and the error says so.
#[test]
fn a_prompt_that_cannot_fit_even_split_is_refused_clearly() {
    let e = engine(1, 4);
    let text = "the quick brown fox jumps over the lazy dog ".repeat(10);
    let o = collect(e.submit(script(&text, Default::default(), 250)).unwrap());
    match o.error {
        Some(GenerationError::InvalidRequest(m)) => {
            assert!(
                m.contains("one word per chunk") && m.contains("--max-seq-len"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}
