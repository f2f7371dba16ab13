//! The fixed-shape decode step (what CUDA graphs capture and replay) against the packed forward:
//! the same audio logits step after step while sequences join, leave, cross a key bucket and sit
//! in slots that are neither contiguous nor in batch order; mixed steps fall back. On CPU the
//! step body runs eagerly; with `HIGGS_TEST_DEVICE=cuda` (cuda build) it is captured and replayed.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::DType;
use higgs_model::decode_graph::KEY_BUCKET;
use higgs_model::random::{Preset, RandomCheckpoint};
use higgs_model::{
    CheckpointLayout, ForwardOptions, HiggsAudioModel, KvCache, LogitsRequest, PositionKind,
    SeqInput,
};
use higgs_testkit::{assert_close, test_device};

const TOL: f32 = 1e-4;

struct Seq {
    slot: usize,
    prompt: usize,
    joins_at: usize,
    leaves_at: usize,
}

fn prompt(model: &HiggsAudioModel, slot: usize, len: usize) -> SeqInput {
    let cfg = model.config();
    let mut s = SeqInput::new(slot).with_logits(LogitsRequest::AUDIO);
    for i in 0..len {
        s.push_text(((i * 7919 + slot * 31) % 120_000) as u32 + 1000);
    }
    s.push_text(cfg.audio_out_bos_token_id);
    s
}

fn audio_step(model: &HiggsAudioModel, slot: usize, t: usize) -> SeqInput {
    let cfg = model.config();
    let col: Vec<u32> = (0..cfg.num_codebooks)
        .map(|k| ((t * 131 + k * 977 + slot * 53) % cfg.codebook_size) as u32)
        .collect();
    let mut s = SeqInput::new(slot).with_logits(LogitsRequest::AUDIO);
    s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
    s
}

fn run(ck: &RandomCheckpoint) {
    let dir = tempfile::tempdir().unwrap();
    ck.write(dir.path()).unwrap();
    let model = HiggsAudioModel::load(dir.path(), DType::F32, &test_device()).unwrap();
    // Slot 4 starts one step short of a key bucket and crosses it; slot 1 joins later, mid-run.
    let seqs = [
        Seq {
            slot: 4,
            prompt: KEY_BUCKET - 4,
            joins_at: 0,
            leaves_at: 40,
        },
        Seq {
            slot: 0,
            prompt: 9,
            joins_at: 0,
            leaves_at: 12,
        },
        Seq {
            slot: 2,
            prompt: 30,
            joins_at: 3,
            leaves_at: 40,
        },
        Seq {
            slot: 1,
            prompt: 5,
            joins_at: 20,
            leaves_at: 40,
        },
    ];
    let max_len = KEY_BUCKET + 64;
    let mut plain = model.new_cache(6, max_len).unwrap();
    plain.set_decode_graphs(false);
    let mut fixed = model.new_cache(6, max_len).unwrap();
    fixed.set_decode_graphs(true);
    let mut fixed_steps = 0u64;
    for t in 0..40 {
        let mut batch = Vec::new();
        for s in &seqs {
            if t == s.joins_at {
                batch.push(prompt(&model, s.slot, s.prompt));
            } else if t > s.joins_at && t < s.leaves_at {
                batch.push(audio_step(&model, s.slot, t));
            }
        }
        if batch.iter().all(|q| q.len() == 1) {
            fixed_steps += 1;
        }
        let a = model
            .forward(&batch, &mut plain, ForwardOptions::default())
            .unwrap();
        let b = model
            .forward(&batch, &mut fixed, ForwardOptions::default())
            .unwrap();
        let (a, b) = (a.audio_logits.unwrap(), b.audio_logits.unwrap());
        assert_eq!(a.dims(), b.dims(), "step {t}");
        assert_close(&format!("audio logits step {t}"), &b, &a, TOL);
    }
    for s in &seqs {
        assert_eq!(plain.len(s.slot), fixed.len(s.slot), "slot {}", s.slot);
    }
    let st = fixed.graph_stats();
    assert_eq!(
        st.replayed + st.eager,
        fixed_steps,
        "every one-audio-position step takes the fixed-shape path: {st:?}"
    );
    if model.device().is_cuda() {
        // Buckets met: rows 8 (slot 4) x keys 256, then x 512; rows 8 again after slot 0 leaves.
        assert!(st.captured >= 2 && st.replayed > st.captured, "{st:?}");
    }
    assert_eq!(plain.graph_stats().replayed + plain.graph_stats().eager, 0);
}

#[test]
fn fixed_shape_decode_step_equals_the_packed_forward() {
    run(&RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Hf));
}

#[test]
fn fixed_shape_decode_step_with_fast_forward_layers() {
    let mut ck = RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Legacy);
    ck.geometry.dual_ffn_layers = vec![0, 2];
    run(&ck);
}

#[test]
fn text_logits_or_prefill_steps_do_not_take_the_fixed_path() {
    let dir = tempfile::tempdir().unwrap();
    RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Hf)
        .write(dir.path())
        .unwrap();
    let model = HiggsAudioModel::load(dir.path(), DType::F32, &test_device()).unwrap();
    let mut cache: KvCache = model.new_cache(2, 64).unwrap();
    cache.set_decode_graphs(true);
    model
        .forward(
            &[prompt(&model, 0, 4)],
            &mut cache,
            ForwardOptions::default(),
        )
        .unwrap();
    let both = audio_step(&model, 0, 1).with_logits(LogitsRequest::BOTH);
    let out = model
        .forward(&[both], &mut cache, ForwardOptions::default())
        .unwrap();
    assert!(out.text_logits.is_some() && out.audio_logits.is_some());
    let mut text = SeqInput::new(0).with_logits(LogitsRequest::AUDIO);
    text.push_text(1000);
    model
        .forward(&[text], &mut cache, ForwardOptions::default())
        .unwrap();
    let st = cache.graph_stats();
    assert_eq!(st.replayed + st.eager, 0, "{st:?}");
    model
        .forward(
            &[audio_step(&model, 0, 3)],
            &mut cache,
            ForwardOptions::default(),
        )
        .unwrap();
    let st = cache.graph_stats();
    assert_eq!(st.replayed + st.eager, 1, "{st:?}");
}

#[test]
fn preparing_graphs_writes_nothing_to_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Hf)
        .write(dir.path())
        .unwrap();
    let model = HiggsAudioModel::load(dir.path(), DType::F32, &test_device()).unwrap();
    let mut cache = model.new_cache(4, 32).unwrap();
    cache.set_decode_graphs(true);
    model
        .forward(
            &[prompt(&model, 1, 6)],
            &mut cache,
            ForwardOptions::default(),
        )
        .unwrap();
    let before = model
        .forward(
            &[audio_step(&model, 1, 0)],
            &mut cache,
            ForwardOptions::default(),
        )
        .unwrap();
    cache.truncate(1, 7);
    let held = model
        .prepare_decode_graphs(&mut cache, &[1, 2, 4, 8])
        .unwrap();
    if model.device().is_cuda() {
        assert_eq!(held, 3, "rows 1, 2 and 4 (8 is clamped to the 4 slots)");
    }
    assert_eq!(cache.len(1), 7);
    assert_eq!(cache.len(0), 0);
    // The cached prompt is intact: the same step gives the same logits again.
    let again = model
        .forward(
            &[audio_step(&model, 1, 0)],
            &mut cache,
            ForwardOptions::default(),
        )
        .unwrap();
    assert_close(
        "logits after prepare",
        &again.audio_logits.unwrap(),
        &before.audio_logits.unwrap(),
        TOL,
    );
    let st = cache.graph_stats();
    assert_eq!(
        st.replayed + st.eager,
        2,
        "prepare is not a decode step: {st:?}"
    );
}

/// Several prompts prefilled in ONE forward (the padded prefill attention group), mixed with a
/// decode step of another sequence and with a prompt that continues a cached one, give the same
/// logits as each run alone, and so do the decode steps after them.
#[test]
fn prefills_attended_together_equal_each_alone() {
    for (layout, dual) in [
        (CheckpointLayout::Hf, None),
        (CheckpointLayout::Legacy, Some(vec![0, 2])),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut ck = RandomCheckpoint::new(Preset::Tiny, layout);
        if let Some(d) = dual {
            ck.geometry.dual_ffn_layers = d;
        }
        ck.write(dir.path()).unwrap();
        let model = HiggsAudioModel::load(dir.path(), DType::F32, &test_device()).unwrap();
        let cfg = model.config().clone();
        // Slot 2 already holds a prompt with audio and decodes; slot 6 continues its cached text
        // prompt with a mixed text+audio piece; slots 5, 0, 3 bring new prompts of other lengths.
        let with_audio = |slot: usize, text: usize, audio: usize| {
            let mut s = prompt(&model, slot, text);
            for t in 0..audio {
                let col: Vec<u32> = (0..cfg.num_codebooks)
                    .map(|k| ((t * 7 + k * 3 + slot) % cfg.codebook_size) as u32)
                    .collect();
                s.push_audio(&col, PositionKind::AudioIn, cfg.audio_in_token_id);
            }
            s.with_logits(LogitsRequest::BOTH)
        };
        let setup = [with_audio(2, 5, 3), prompt(&model, 6, 4)];
        let step = vec![
            audio_step(&model, 2, 0),
            with_audio(6, 3, 2),
            prompt(&model, 5, 11),
            with_audio(0, 2, 4),
            prompt(&model, 3, 7).with_logits(LogitsRequest::BOTH),
        ];
        let mut together = model.new_cache(8, 64).unwrap();
        for s in &setup {
            model
                .forward(
                    std::slice::from_ref(s),
                    &mut together,
                    ForwardOptions::default(),
                )
                .unwrap();
        }
        let out = model
            .forward(&step, &mut together, ForwardOptions::default())
            .unwrap();
        // The next step of every sequence must agree too (the K/V cached by the grouped step).
        let next: Vec<SeqInput> = step.iter().map(|s| audio_step(&model, s.slot, 9)).collect();
        let after = model
            .forward(&next, &mut together, ForwardOptions::default())
            .unwrap();
        let run = |cache: &mut KvCache, s: &SeqInput| {
            model
                .forward(std::slice::from_ref(s), cache, ForwardOptions::default())
                .unwrap()
        };
        let (mut ti, mut ai) = (0, 0);
        for (i, seq) in step.iter().enumerate() {
            let mut alone = model.new_cache(8, 64).unwrap();
            for s in setup.iter().filter(|s| s.slot == seq.slot) {
                run(&mut alone, s);
            }
            let one = run(&mut alone, seq);
            if seq.logits.text {
                let want = one.text_logits.as_ref().unwrap().get(0).unwrap();
                let got = out.text_logits.as_ref().unwrap().get(ti).unwrap();
                assert_close(&format!("slot {} text", seq.slot), &got, &want, TOL);
                ti += 1;
            }
            if seq.logits.audio {
                let want = one.audio_logits.as_ref().unwrap().get(0).unwrap();
                let got = out.audio_logits.as_ref().unwrap().get(ai).unwrap();
                assert_close(&format!("slot {} audio", seq.slot), &got, &want, TOL);
                ai += 1;
            }
            let a = run(&mut alone, &next[i]);
            assert_close(
                &format!("slot {} next step", seq.slot),
                &after.audio_logits.as_ref().unwrap().get(i).unwrap(),
                &a.audio_logits.unwrap().get(0).unwrap(),
                TOL,
            );
        }
    }
}
