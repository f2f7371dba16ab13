//! The audio worker on the fixture codec: it decodes windows of several requests (and several
//! engine steps) in shape groups yet delivers each request's events in queue order; a failing
//! decode fails only its requests, tells the engine, and silences them until they are forgotten.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use higgs_codec::Codec;
use higgs_engine::audio_out::{AudioMsg, AudioWorker, Chunk, SharedCodec, WindowJob};
use higgs_engine::audio_stream::{Window, WindowPlanner};
use higgs_engine::{Codes, Event, StopReason, Usage};
use higgs_testkit::fixture;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Deterministic codes `[frames]` of `n` codebooks, all below `size`.
fn codes(n: usize, frames: usize, size: u32, salt: u32) -> Vec<Vec<u32>> {
    (0..frames)
        .map(|f| {
            (0..n)
                .map(|k| (f as u32 * 31 + k as u32 * 7 + salt * 13) % size)
                .collect()
        })
        .collect()
}

/// The requests' submission time (one for all: only its order against the events matters).
fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn job(id: u64, to: &UnboundedSender<Event>, chunk: Chunk) -> WindowJob {
    WindowJob {
        id,
        to: to.clone(),
        submitted: t0(),
        queued: Duration::ZERO,
        first_frame: None,
        frames_received: 0,
        chunk,
        span: tracing::Span::none(),
    }
}

fn drain(rx: &mut UnboundedReceiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn finish(id: u64, to: &UnboundedSender<Event>) -> AudioMsg {
    AudioMsg::Finish {
        id,
        to: to.clone(),
        reason: StopReason::Stop,
        usage: Usage::default(),
        queue: Duration::ZERO,
        submitted: t0(),
    }
}

#[test]
fn windows_of_many_steps_and_requests_arrive_in_order_and_equal_one_shot_decodes() {
    many_requests_arrive_in_order_and_equal_one_shot_decodes(false);
}

#[test]
fn layer_steps_of_many_requests_arrive_in_order_and_equal_one_shot_decodes() {
    // `EngineConfig::layer_streaming`: the same requests as layer-wise steps (each request's
    // decoder state in a pool row of the worker, steps batched across requests by length).
    many_requests_arrive_in_order_and_equal_one_shot_decodes(true);
}

fn many_requests_arrive_in_order_and_equal_one_shot_decodes(layers: bool) {
    let codec = Codec::load(&fixture("codec"), &higgs_testkit::test_device()).unwrap();
    let (n, size) = (codec.num_codebooks(), codec.codebook_size() as u32);
    let ctx = codec.decoder_receptive_field_frames();
    let shared = SharedCodec::new(&codec);
    let (failed_tx, failed_rx) = std::sync::mpsc::channel();
    let nanos = Arc::new(AtomicU64::new(0));
    let mut worker = AudioWorker::new(&shared, failed_tx, nanos.clone()).with_step_capacity(3);

    // Three requests of different lengths, cut into windows of different sizes, queued as the
    // engine would (one Decode message per step), with a text event in between.
    let lens = [9usize, 47, 70];
    let mut streams: Vec<(WindowPlanner, Vec<Vec<u32>>)> = lens
        .iter()
        .enumerate()
        .map(|(r, &len)| {
            (
                WindowPlanner::new(n, if layers { 0 } else { ctx }, ctx),
                codes(n, len, size, r as u32),
            )
        })
        .collect();
    let mut chans: Vec<_> = lens.iter().map(|_| unbounded_channel::<Event>()).collect();
    let mut msgs = Vec::new();
    let mut text_at = None;
    for step in 0..120 {
        let mut jobs = Vec::new();
        for (r, (s, all)) in streams.iter_mut().enumerate() {
            let received = s.frames_received();
            if received < all.len() {
                s.push_frames([all[received].clone()]);
                if s.frames_received() == all.len() {
                    s.finish();
                }
            }
            let want = 2 + r + step % 3;
            if layers {
                if let Some(st) = s.next_step(want, want, codec.step_flush_frames()) {
                    s.accept_step(&st);
                    jobs.push(job(r as u64, &chans[r].0, Chunk::Step(st)));
                }
            } else if let Some(w) = s.next_window(want, want) {
                s.accept(&w);
                jobs.push(job(r as u64, &chans[r].0, Chunk::Window(w)));
            }
        }
        if !jobs.is_empty() {
            msgs.push(AudioMsg::Decode(jobs));
        }
        // Request 1's text event is queued right after its first audio window.
        let emitted = streams[1].0.frames_emitted();
        if text_at.is_none() && emitted > 0 {
            text_at = Some(emitted);
            msgs.push(AudioMsg::Event {
                id: 1,
                to: chans[1].0.clone(),
                event: Event::Text {
                    ids: vec![7],
                    text: "x".into(),
                },
            });
        }
    }
    assert!(
        text_at.is_some_and(|t| t < lens[1]),
        "the text event falls between two windows ({text_at:?})"
    );
    for (r, (s, _)) in streams.iter().enumerate() {
        assert!(s.is_done(), "request {r} has frames left");
        msgs.push(finish(r as u64, &chans[r].0));
    }
    // Everything in one `handle` call: windows of all steps are batched together.
    worker.handle(msgs);
    assert!(failed_rx.try_recv().is_err());
    assert!(nanos.load(Ordering::Relaxed) > 0, "codec time is counted");

    for (r, (_, all)) in streams.iter().enumerate() {
        let mut rx = std::mem::replace(&mut chans[r].1, unbounded_channel().1);
        let events = drain(&mut rx);
        let mut audio = Vec::new();
        let mut next_frame = 0;
        let mut saw_text = false;
        for (k, e) in events.iter().enumerate() {
            match e {
                Event::Audio {
                    samples,
                    start_frame,
                    frames,
                } => {
                    assert_eq!(*start_frame, next_frame, "request {r}: audio in order");
                    assert_eq!(samples.len(), frames * codec.hop_length());
                    next_frame += frames;
                    audio.extend_from_slice(samples);
                }
                Event::Text { .. } => {
                    saw_text = true;
                    // Layer steps let frames out once decoded, which can be before the
                    // planner's chunk boundary.
                    if layers {
                        assert!(
                            text_at.is_some_and(|t| next_frame >= t),
                            "text after its audio"
                        );
                    } else {
                        assert_eq!(Some(next_frame), text_at, "text between the same windows");
                    }
                }
                Event::Finished { timings, .. } => {
                    assert_eq!(k, events.len() - 1, "Finished is the last event");
                    let ttfa = timings.time_to_first_audio.expect("had audio");
                    assert!(ttfa <= timings.total);
                }
                other => panic!("request {r}: unexpected {other:?}"),
            }
        }
        assert_eq!(saw_text, r == 1);
        assert_eq!(next_frame, all.len());
        let one_shot = codec.decode_codes(&Codes::from_columns(n, all)).unwrap();
        assert_eq!(audio.len(), one_shot.len());
        let diff = audio
            .iter()
            .zip(&one_shot)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= higgs_codec::streaming::STREAMING_TOLERANCE,
            "request {r}: streamed vs one-shot {diff}"
        );
    }
}

#[test]
fn a_failed_decode_fails_only_its_requests_until_they_are_forgotten() {
    let codec = Codec::load(&fixture("codec"), &higgs_testkit::test_device()).unwrap();
    let (n, size) = (codec.num_codebooks(), codec.codebook_size() as u32);
    let shared = SharedCodec::new(&codec);
    let (failed_tx, failed_rx) = std::sync::mpsc::channel();
    let nanos = Arc::new(AtomicU64::new(0));
    let mut worker = AudioWorker::new(&shared, failed_tx, nanos.clone());
    let (good_tx, mut good_rx) = unbounded_channel();
    let (bad_tx, mut bad_rx) = unbounded_channel();
    let frames = |salt| Codes::from_columns(n, &codes(n, 6, size, salt));
    let good = Window {
        codes: frames(0),
        left: 0,
        n_new: 6,
        start_frame: 0,
    };
    // A window that claims more frames than it holds: the codec refuses it.
    let bad = Window {
        codes: frames(1),
        left: 4,
        n_new: 6,
        start_frame: 0,
    };
    worker.handle(vec![
        AudioMsg::Decode(vec![
            job(1, &good_tx, Chunk::Window(good.clone())),
            job(2, &bad_tx, Chunk::Window(bad)),
        ]),
        AudioMsg::Event {
            id: 2,
            to: bad_tx.clone(),
            event: Event::Text {
                ids: vec![1],
                text: "late".into(),
            },
        },
        finish(2, &bad_tx),
        finish(1, &good_tx),
    ]);
    let bad_events = drain(&mut bad_rx);
    assert_eq!(bad_events.len(), 1, "{bad_events:?}");
    assert!(
        matches!(&bad_events[0], Event::Failed(e) if e.error_type() == "internal"),
        "{bad_events:?}"
    );
    assert_eq!(failed_rx.try_iter().collect::<Vec<_>>(), vec![2]);
    let good_events = drain(&mut good_rx);
    assert!(matches!(good_events[0], Event::Audio { frames: 6, .. }));
    assert!(matches!(good_events[1], Event::Finished { .. }));
    assert_eq!(good_events.len(), 2);

    // Once the engine has released it, the id may be used again and is delivered normally.
    worker.handle(vec![
        AudioMsg::Forget(2),
        AudioMsg::Decode(vec![job(2, &bad_tx, Chunk::Window(good))]),
        finish(2, &bad_tx),
    ]);
    let again = drain(&mut bad_rx);
    assert!(matches!(again[0], Event::Audio { .. }), "{again:?}");
    assert!(matches!(again[1], Event::Finished { .. }));
    assert!(failed_rx.try_recv().is_err());

    // A closed stream is not decoded for (nobody listens) and nothing is sent.
    let (gone_tx, gone_rx) = unbounded_channel::<Event>();
    drop(gone_rx);
    let before = nanos.load(Ordering::Relaxed);
    let w = Window {
        codes: frames(2),
        left: 0,
        n_new: 6,
        start_frame: 0,
    };
    worker.handle(vec![AudioMsg::Decode(vec![job(
        3,
        &gone_tx,
        Chunk::Window(w),
    )])]);
    assert_eq!(before, nanos.load(Ordering::Relaxed), "no decode ran");
}
