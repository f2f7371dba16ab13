//! Several engines behind one pool on the fixture model and codec (CPU engines standing in for
//! GPUs): least-loaded routing with round-robin ties, queues filled before a refusal, failed
//! engines out of rotation while the others serve, and the pool's totals.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::time::Duration;

use candle_core::DType;
use higgs_codec::Codec;
use higgs_engine::{
    start, EngineConfig, EngineHandle, EngineParts, EnginePool, EngineState, Event,
    GenerateRequest, GenerationParams, PoolMember, PoolPolicy, PoolState, Prompting, RasParams,
    RequestStream, SamplingParams, SubmitError,
};
use higgs_model::HiggsAudioModel;
use higgs_testkit::fixture;
use higgs_text::{Message, Role, TextTokenizer};

fn engine(label: usize, max_running: usize, max_queue: usize) -> EngineHandle {
    let parts = EngineParts {
        model: HiggsAudioModel::load(&fixture("llm"), DType::F32, &higgs_testkit::test_device())
            .unwrap(),
        codec: Codec::load(&fixture("codec"), &higgs_testkit::test_device()).unwrap(),
        tokenizer: TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: None,
    };
    let cfg = EngineConfig {
        max_running,
        max_seq_len: 256,
        max_queue,
        prefill_budget: 64,
        label: label.to_string(),
        ..Default::default()
    };
    start(cfg, parts).unwrap().0
}

fn pool(n: usize, max_running: usize, max_queue: usize) -> EnginePool {
    let members = (0..n)
        .map(|i| PoolMember {
            device: format!("cpu{i}"),
            engine: Ok(engine(i, max_running, max_queue)),
        })
        .collect();
    let p = EnginePool::new(members, PoolPolicy::default()).unwrap();
    assert!(p.wait_ready(Duration::from_secs(300)), "no engine serves");
    p
}

/// A request that runs for a while: `frames` audio frames, end of speech ignored.
fn request(text: &str, frames: usize) -> GenerateRequest {
    GenerateRequest {
        prompting: Prompting::Messages {
            messages: vec![
                Message::text(Role::System, "Generate audio following instruction."),
                Message::text(Role::User, text),
            ],
            clips: vec![],
        },
        params: GenerationParams {
            sampling: SamplingParams::GREEDY,
            ras: RasParams::OFF,
            max_new_tokens: frames,
            seed: Some(1),
            ignore_eos: true,
        },
        force_audio: true,
        timeout: None,
        request_id: None,
    }
}

/// Audio samples of a request that must finish.
fn finish(mut s: RequestStream) -> usize {
    let mut samples = 0;
    while let Some(e) = s.next_blocking() {
        match e {
            Event::Audio { samples: a, .. } => samples += a.len(),
            Event::Finished { .. } => return samples,
            Event::Failed(e) => panic!("request on engine {} failed: {e}", s.engine()),
            _ => {}
        }
    }
    panic!("the stream of engine {} ended without Finished", s.engine());
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_burst_is_spread_by_free_slots_with_ties_in_turn() {
    let p = pool(3, 2, 4);
    assert_eq!(p.state(), PoolState::Ready);
    assert_eq!(p.serving_slots(), 6);
    // Long requests, so none ends while the burst is submitted.
    let streams: Vec<RequestStream> = (0..6)
        .map(|i| {
            p.submit(request(&format!("Burst number {i}."), 150))
                .unwrap()
        })
        .collect();
    let on: Vec<&str> = streams.iter().map(|s| s.engine()).collect();
    // Equal free slots: taken in turn; each engine's slots fill before anyone waits.
    assert_eq!(on, ["0", "1", "2", "0", "1", "2"]);
    for i in 0..3 {
        let l = p.engine(i).unwrap().load();
        assert_eq!((l.free_slots, l.queued), (0, 0), "engine {i}");
    }
    // Full slots everywhere: the next requests wait, spread over the queues.
    let queued: Vec<RequestStream> = (0..3)
        .map(|i| p.submit(request(&format!("Queued {i}."), 16)).unwrap())
        .collect();
    let mut q: Vec<&str> = queued.iter().map(|s| s.engine()).collect();
    q.sort_unstable();
    assert_eq!(q, ["0", "1", "2"]);
    // The long requests go (cancelled): the waiting ones get slots and finish where they wait.
    drop(streams);
    for s in queued {
        assert!(finish(s) > 0);
    }
    wait_until("every slot is free again", || {
        (0..3).all(|i| p.engine(i).unwrap().load().free_slots == 2)
    });
    let s = p.submit(request("After the burst.", 16)).unwrap();
    assert!(finish(s) > 0);
    wait_until("the stats are published", || {
        p.stats().requests_finished >= 4
    });
    let total = p.stats();
    assert_eq!(total.slots, 6);
    assert!(total.requests_cancelled >= 6, "{total:?}");
    p.shutdown();
    assert_eq!(p.state(), PoolState::Stopping);
    assert!(p.is_stopped());
    assert!(matches!(
        p.submit(request("Too late.", 4)),
        Err(SubmitError::Stopped)
    ));
}

#[test]
fn refused_only_when_every_engine_is_full_and_counted_over_all() {
    let p = pool(2, 1, 1);
    let held: Vec<RequestStream> = (0..4)
        .map(|i| p.submit(request(&format!("Hold {i}."), 150)).unwrap())
        .collect();
    let mut on: Vec<&str> = held.iter().map(|s| s.engine()).collect();
    on.sort_unstable();
    assert_eq!(
        on,
        ["0", "0", "1", "1"],
        "slot and queue place of each engine"
    );
    match p.submit(request("One too many.", 4)) {
        Err(SubmitError::Overloaded { queued, limit }) => assert_eq!((queued, limit), (2, 2)),
        Err(e) => panic!("expected Overloaded, got {e:?}"),
        Ok(s) => panic!("admitted on engine {}", s.engine()),
    }
    drop(held);
    wait_until("the cancelled requests are gone", || {
        (0..2).all(|i| p.engine(i).unwrap().load().free_slots == 1)
    });
    assert!(finish(p.submit(request("Room again.", 16)).unwrap()) > 0);
}

#[test]
fn a_stopped_engine_leaves_the_rotation_and_the_others_keep_serving() {
    let p = pool(3, 2, 4);
    // Engine 1's thread stops without the pool shutting down: a failure.
    p.engine(1).unwrap().shutdown();
    wait_until("engine 1 is out", || {
        p.statuses()[1].state == EngineState::Failed
    });
    let st = p.statuses();
    assert!(
        st[1].error.as_deref().unwrap().contains("stopped"),
        "{:?}",
        st[1].error
    );
    assert_eq!(st[0].state, EngineState::Serving);
    assert_eq!(p.state(), PoolState::Degraded);
    assert!(p.is_ready() && !p.is_stopped());
    assert_eq!(p.serving_slots(), 4);
    let streams: Vec<RequestStream> = (0..6)
        .map(|i| {
            p.submit(request(&format!("Still served {i}."), 16))
                .unwrap()
        })
        .collect();
    for s in streams {
        assert_ne!(s.engine(), "1", "a request went to the failed engine");
        assert!(finish(s) > 0);
    }
    // Every engine out: refused as stopped, and the pool says it failed.
    p.engine(0).unwrap().shutdown();
    p.engine(2).unwrap().shutdown();
    wait_until("no engine left", || p.state() == PoolState::Failed);
    assert!(p.is_stopped() && !p.is_ready());
    assert_eq!(p.serving_slots(), 0);
    assert!(matches!(
        p.submit(request("Nobody left.", 4)),
        Err(SubmitError::Stopped)
    ));
}

#[test]
fn an_engine_that_did_not_start_is_reported_and_never_chosen() {
    let members = vec![
        PoolMember {
            device: "cuda:0".into(),
            engine: Err("CUDA_ERROR_OUT_OF_MEMORY".into()),
        },
        PoolMember {
            device: "cpu".into(),
            engine: Ok(engine(1, 2, 4)),
        },
    ];
    let p = EnginePool::new(members, PoolPolicy::default()).unwrap();
    assert!(p.wait_ready(Duration::from_secs(300)));
    let st = p.statuses();
    assert_eq!(st[0].state, EngineState::Failed);
    assert_eq!(st[0].device, "cuda:0");
    assert!(st[0].error.as_deref().unwrap().contains("OUT_OF_MEMORY"));
    assert_eq!(st[0].stats.slots, 0);
    assert_eq!(p.state(), PoolState::Degraded);
    assert_eq!(p.serving_slots(), 2);
    for i in 0..3 {
        let s = p.submit(request(&format!("Only one {i}."), 16)).unwrap();
        assert_eq!(s.engine(), "1");
        assert!(finish(s) > 0);
    }
    // Without any started engine there is no pool, and the error names every device.
    let none = EnginePool::new(
        vec![
            PoolMember {
                device: "cuda:0".into(),
                engine: Err("no memory".into()),
            },
            PoolMember {
                device: "cuda:1".into(),
                engine: Err("no driver".into()),
            },
        ],
        PoolPolicy::default(),
    );
    let e = none.err().unwrap().to_string();
    assert!(
        e.contains("cuda:0: no memory") && e.contains("cuda:1: no driver"),
        "{e}"
    );
}
