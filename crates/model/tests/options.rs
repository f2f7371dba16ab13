//! `ModelOptions` only pick code paths: a mixed batch (prefills of several sequences, a decode
//! step, a continued prompt) gives the same logits with every switch off as with the defaults.
//! On the CPU the CUDA-only switches are no-ops; with `HIGGS_TEST_DEVICE=cuda` they are not.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::DType;
use higgs_model::random::{Preset, RandomCheckpoint};
use higgs_model::{
    CheckpointLayout, ForwardOptions, HiggsAudioModel, LogitsRequest, ModelOptions, PositionKind,
    SeqInput,
};
use higgs_testkit::{assert_close, test_device};

fn seq(model: &HiggsAudioModel, slot: usize, text: usize, audio: usize) -> SeqInput {
    let cfg = model.config();
    let mut s = SeqInput::new(slot).with_logits(LogitsRequest::BOTH);
    for i in 0..text {
        s.push_text(((i * 7919 + slot * 31) % 120_000) as u32 + 1000);
    }
    for t in 0..audio {
        let col: Vec<u32> = (0..cfg.num_codebooks)
            .map(|k| ((t * 7 + k * 3 + slot) % cfg.codebook_size) as u32)
            .collect();
        s.push_audio(&col, PositionKind::AudioIn, cfg.audio_in_token_id);
    }
    s
}

/// Text and audio logits of three forwards: prompts, a mixed step, then a decode step.
fn logits(dir: &std::path::Path, opts: &ModelOptions) -> Vec<candle_core::Tensor> {
    let model = HiggsAudioModel::load_with(dir, DType::F32, &test_device(), opts).unwrap();
    let mut cache = model.new_cache(6, 128).unwrap();
    let steps = [
        vec![seq(&model, 2, 5, 3), seq(&model, 4, 4, 0)],
        vec![
            seq(&model, 2, 0, 1),
            seq(&model, 4, 3, 2),
            seq(&model, 0, 11, 0),
            seq(&model, 5, 2, 4),
        ],
        vec![
            seq(&model, 0, 0, 1),
            seq(&model, 4, 0, 1),
            seq(&model, 5, 0, 1),
        ],
    ];
    let mut out = Vec::new();
    for batch in steps {
        let o = model
            .forward(&batch, &mut cache, ForwardOptions::default())
            .unwrap();
        out.extend(o.text_logits);
        out.extend(o.audio_logits);
    }
    out
}

#[test]
fn every_switch_off_gives_the_default_logits() {
    // Layer 1 is fast-forward: its audio-key mask takes the per-sequence path.
    let dir = tempfile::tempdir().unwrap();
    let mut ck = RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Legacy);
    ck.geometry.dual_ffn_layers = vec![0, 2];
    ck.write(dir.path()).unwrap();
    let want = logits(dir.path(), &ModelOptions::default());
    let off = ModelOptions {
        fused_swiglu: false,
        batched_kv_write: false,
        prefill_group: false,
        cuda_graphs: false,
        fused_decode: false,
        fused_add_norm: false,
    };
    let got = logits(dir.path(), &off);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_close("all switches off vs default", g, w, 1e-4);
    }
}
