//! Parity of the forward pass with the official Python implementation, on the golden fixtures
//! (`$HIGGS_FIXTURES/llm`). Every prompt in the fixture set is checked; shapes come from the
//! fixtures, so any fixture set of the same format (other sizes, layer counts, DualFFN placement)
//! runs through the same code.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::{DType, Tensor};
use higgs_model::{ForwardOptions, HiggsAudioModel, LogitsRequest, PositionKind, SeqInput};
use higgs_testkit::{assert_close, fixture, golden_json, test_device, Golden};

const TOL: f32 = 1e-4;

fn load_model() -> HiggsAudioModel {
    HiggsAudioModel::load(&fixture("llm"), DType::F32, &test_device()).expect("load fixture model")
}

fn prompt_names() -> Vec<String> {
    let g = golden_json("llm/golden.json");
    let mut v: Vec<String> = g["prompts"]
        .as_object()
        .expect("golden.json has `prompts`")
        .keys()
        .cloned()
        .collect();
    v.sort();
    assert!(!v.is_empty(), "fixture set has no prompts");
    v
}

/// Columns `[n_cb]` of a `[n_cb, T]` golden code matrix.
fn columns(g: &Golden, name: &str) -> Vec<Vec<u32>> {
    if !g.has(name) {
        return Vec::new();
    }
    let t = g.get(name);
    let (nc, len) = t.dims2().unwrap();
    let flat: Vec<i64> = g.i64s(name);
    (0..len)
        .map(|j| (0..nc).map(|k| flat[k * len + j] as u32).collect())
        .collect()
}

/// The expanded prefill sequence of prompt `p` exactly as the reference merged it.
fn prefill_input(model: &HiggsAudioModel, g: &Golden, p: &str) -> SeqInput {
    let cfg = model.config();
    let ids = g.i64s(&format!("{p}.prefill.expanded_input_ids"));
    let out_mask = g.i64s(&format!("{p}.prefill.audio_out_mask"));
    let in_mask = g.i64s(&format!("{p}.prefill.audio_in_discrete_codes_mask"));
    let out_cols = columns(g, &format!("{p}.inputs.audio_out_ids"));
    let in_cols = columns(g, &format!("{p}.inputs.audio_in_ids"));
    let (mut oi, mut ii) = (0, 0);
    let mut seq = SeqInput::new(0).with_logits(LogitsRequest::BOTH);
    for (j, &id) in ids.iter().enumerate() {
        if out_mask[j] != 0 {
            seq.push_audio(
                &out_cols[oi],
                PositionKind::AudioOut,
                cfg.audio_out_token_id,
            );
            oi += 1;
        } else if in_mask[j] != 0 {
            seq.push_audio(&in_cols[ii], PositionKind::AudioIn, cfg.audio_in_token_id);
            ii += 1;
        } else {
            seq.push_text(id as u32);
        }
    }
    assert_eq!(oi, out_cols.len(), "{p}: every audio-out column is used");
    assert_eq!(ii, in_cols.len(), "{p}: every audio-in column is used");
    seq
}

#[test]
fn parity_prefill_embeddings_layers_and_logits() {
    let model = load_model();
    let g = Golden::load("llm/golden.safetensors");
    let n_layers = model.config().num_hidden_layers;
    for p in prompt_names() {
        let seq = prefill_input(&model, &g, &p);
        let positions = g.i64s(&format!("{p}.prefill.position_ids"));
        assert_eq!(
            positions,
            (0..seq.len() as i64).collect::<Vec<_>>(),
            "{p}: positions"
        );
        let mut cache = model.new_cache(1, seq.len() + 4).unwrap();
        let out = model
            .forward(
                &[seq],
                &mut cache,
                ForwardOptions {
                    capture_hidden: true,
                },
            )
            .unwrap();
        assert_eq!(out.hidden.len(), n_layers + 2);
        assert_close(
            &format!("{p}.prefill.hidden_embed"),
            &out.hidden[0],
            &g.f32(&format!("{p}.prefill.hidden_embed")),
            TOL,
        );
        for l in 0..n_layers {
            let name = format!("{p}.prefill.hidden_layer{l}");
            assert_close(&name, &out.hidden[l + 1], &g.f32(&name), TOL);
        }
        let final_norm = &out.hidden[n_layers + 1];
        assert_close(
            &format!("{p}.prefill.hidden_final_norm"),
            final_norm,
            &g.f32(&format!("{p}.prefill.hidden_final_norm")),
            TOL,
        );
        let text = out.text_logits.unwrap().squeeze(0).unwrap();
        assert_close(
            &format!("{p}.prefill.text_logits_last"),
            &text,
            &g.f32(&format!("{p}.prefill.text_logits_last")),
            TOL,
        );
        let audio = out.audio_logits.unwrap().squeeze(0).unwrap();
        assert_close(
            &format!("{p}.prefill.audio_logits_last"),
            &audio,
            &g.f32(&format!("{p}.prefill.audio_logits_last")),
            TOL,
        );

        // Audio head at every audio-out position, where the fixture records it.
        let name = format!("{p}.prefill.audio_logits_at_audio_out");
        if g.has(&name) {
            let mask = g.i64s(&format!("{p}.prefill.audio_out_mask"));
            let rows: Vec<u32> = mask
                .iter()
                .enumerate()
                .filter(|(_, &m)| m != 0)
                .map(|(i, _)| i as u32)
                .collect();
            let idx = Tensor::new(rows.as_slice(), model.device()).unwrap();
            let h = final_norm.index_select(&idx, 0).unwrap();
            assert_close(&name, &model.audio_head(&h).unwrap(), &g.f32(&name), TOL);
        }
    }
}

/// Teacher-forced decoding: feed the recorded input of every generation step through the KV cache
/// and compare the logits the reference computed at that step.
#[test]
fn parity_decode_steps_with_kv_cache() {
    let model = load_model();
    let cfg = model.config().clone();
    let g = Golden::load("llm/golden.safetensors");
    for p in prompt_names() {
        let modes = g.i64s(&format!("{p}.steps.mode"));
        let tokens = g.i64s(&format!("{p}.steps.input_token"));
        let audio_in = g.i64s(&format!("{p}.steps.input_audio"));
        let nc = cfg.num_codebooks;
        let audio_idx = g.i64s(&format!("{p}.steps.audio_step_index"));
        let text_idx = g.i64s(&format!("{p}.steps.text_step_index"));
        let audio_logits = g.f32(&format!("{p}.steps.audio_logits"));
        let text_logits = g.f32(&format!("{p}.steps.text_logits"));
        let prefill = prefill_input(&model, &g, &p);
        let mut cache = model.new_cache(1, prefill.len() + modes.len() + 1).unwrap();
        for step in 0..modes.len() {
            let want_audio = audio_idx.iter().position(|&i| i as usize == step);
            let want_text = text_idx.iter().position(|&i| i as usize == step);
            let req = LogitsRequest {
                text: want_text.is_some(),
                audio: want_audio.is_some(),
            };
            let seq = if step == 0 {
                prefill.clone().with_logits(req)
            } else if modes[step] == 2 {
                let col: Vec<u32> = audio_in[step * nc..(step + 1) * nc]
                    .iter()
                    .map(|&c| c as u32)
                    .collect();
                assert!(
                    col.iter().all(|&c| c < cfg.codebook_rows() as u32),
                    "{p} step {step}: audio input recorded"
                );
                let mut s = SeqInput::new(0);
                s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
                s.with_logits(req)
            } else {
                let mut s = SeqInput::new(0);
                s.push_text(tokens[step] as u32);
                s.with_logits(req)
            };
            let out = model
                .forward(&[seq], &mut cache, ForwardOptions::default())
                .unwrap();
            if let Some(j) = want_audio {
                let got = out.audio_logits.as_ref().unwrap().squeeze(0).unwrap();
                assert_close(
                    &format!("{p}.steps.audio_logits[{j}] (step {step})"),
                    &got,
                    &audio_logits.get(j).unwrap(),
                    TOL,
                );
            }
            if let Some(j) = want_text {
                let got = out.text_logits.as_ref().unwrap().squeeze(0).unwrap();
                assert_close(
                    &format!("{p}.steps.text_logits[{j}] (step {step})"),
                    &got,
                    &text_logits.get(j).unwrap(),
                    TOL,
                );
            }
        }
    }
}

/// The step input of prompt `p` at its generation step `step` (0 = the whole prefill).
fn step_input(
    model: &HiggsAudioModel,
    g: &Golden,
    p: &str,
    step: usize,
    slot: usize,
) -> (SeqInput, Option<usize>, Option<usize>) {
    let cfg = model.config();
    let nc = cfg.num_codebooks;
    let modes = g.i64s(&format!("{p}.steps.mode"));
    let audio_idx = g.i64s(&format!("{p}.steps.audio_step_index"));
    let text_idx = g.i64s(&format!("{p}.steps.text_step_index"));
    let want_audio = audio_idx.iter().position(|&i| i as usize == step);
    let want_text = text_idx.iter().position(|&i| i as usize == step);
    let req = LogitsRequest {
        text: want_text.is_some(),
        audio: want_audio.is_some(),
    };
    let mut seq = if step == 0 {
        prefill_input(model, g, p)
    } else if modes[step] == 2 {
        let audio_in = g.i64s(&format!("{p}.steps.input_audio"));
        let col: Vec<u32> = audio_in[step * nc..(step + 1) * nc]
            .iter()
            .map(|&c| c as u32)
            .collect();
        let mut s = SeqInput::new(0);
        s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
        s
    } else {
        let tokens = g.i64s(&format!("{p}.steps.input_token"));
        let mut s = SeqInput::new(0);
        s.push_text(tokens[step] as u32);
        s
    };
    seq.slot = slot;
    (seq.with_logits(req), want_text, want_audio)
}

/// Batched = alone: every prompt of the fixture set runs in ONE forward per step, joining at
/// different steps (prefills mixed with other sequences' decode steps), each in its own KV slot;
/// every sequence's logits must equal the reference's single-sequence logits. Slots are assigned
/// in reverse batch order with gaps, so the batched decode attention over a slot range sees
/// unused slots and a batch order that is not the slot order.
#[test]
fn parity_batched_sequences_equal_single_sequence_reference() {
    let model = load_model();
    let g = Golden::load("llm/golden.safetensors");
    let prompts = prompt_names();
    let steps: Vec<usize> = prompts
        .iter()
        .map(|p| g.i64s(&format!("{p}.steps.mode")).len())
        .collect();
    let max_len = prompts
        .iter()
        .zip(&steps)
        .map(|(p, &n)| g.i64s(&format!("{p}.prefill.expanded_input_ids")).len() + n)
        .max()
        .unwrap();
    let n = prompts.len();
    let slot_of = |s: usize| 2 * (n - 1 - s);
    let mut cache = model.new_cache(2 * n, max_len + 1).unwrap();
    let mut global: usize = 0;
    loop {
        let mut batch = Vec::new();
        let mut meta = Vec::new();
        for (s, p) in prompts.iter().enumerate() {
            // Prompt s joins at global step 2*s.
            let Some(step) = global.checked_sub(2 * s) else {
                continue;
            };
            if step >= steps[s] {
                continue;
            }
            let (seq, t, a) = step_input(&model, &g, p, step, slot_of(s));
            batch.push(seq);
            meta.push((p.clone(), step, t, a));
        }
        if batch.is_empty() {
            if global > 2 * prompts.len() {
                break;
            }
            global += 1;
            continue;
        }
        let out = model
            .forward(&batch, &mut cache, ForwardOptions::default())
            .unwrap();
        let (mut ti, mut ai) = (0, 0);
        for (p, step, t, a) in meta {
            if let Some(j) = t {
                let got = out.text_logits.as_ref().unwrap().get(ti).unwrap();
                ti += 1;
                let want = g.f32(&format!("{p}.steps.text_logits")).get(j).unwrap();
                assert_close(
                    &format!("batched {p} text logits step {step}"),
                    &got,
                    &want,
                    TOL,
                );
            }
            if let Some(j) = a {
                let got = out.audio_logits.as_ref().unwrap().get(ai).unwrap();
                ai += 1;
                let want = g.f32(&format!("{p}.steps.audio_logits")).get(j).unwrap();
                assert_close(
                    &format!("batched {p} audio logits step {step}"),
                    &got,
                    &want,
                    TOL,
                );
            }
        }
        global += 1;
    }
    for (s, p) in prompts.iter().enumerate() {
        let expect = g.i64s(&format!("{p}.prefill.expanded_input_ids")).len() + steps[s] - 1;
        assert_eq!(cache.len(slot_of(s)), expect, "{p}: cached positions");
    }
}

/// bf16 (the production dtype on GPU) stays close to f32 on the fixture prompts. Prints the
/// divergence so it can be reported; the bound is loose because bf16 has 8 mantissa bits.
#[test]
fn bf16_prefill_stays_close_to_f32() {
    let f32_model = load_model();
    let bf16_model = HiggsAudioModel::load(&fixture("llm"), DType::BF16, &test_device()).unwrap();
    let g = Golden::load("llm/golden.safetensors");
    for p in prompt_names() {
        let run = |m: &HiggsAudioModel| {
            let seq = prefill_input(m, &g, &p);
            let mut cache = m.new_cache(1, seq.len()).unwrap();
            let out = m
                .forward(&[seq], &mut cache, ForwardOptions::default())
                .unwrap();
            (out.text_logits.unwrap(), out.audio_logits.unwrap())
        };
        let (t32, a32) = run(&f32_model);
        let (t16, a16) = run(&bf16_model);
        for (what, x, y) in [("text", &t32, &t16), ("audio", &a32, &a16)] {
            let (d, _) = higgs_testkit::max_abs_diff(y, x);
            let scale = x
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            println!("{p}: bf16 vs f32 {what} logits max |diff| {d:.4} (max |logit| {scale:.2}, rel {:.4})", d / scale);
            assert!(
                d / scale < 0.1,
                "{p}: bf16 {what} logits diverge: {d} vs scale {scale}"
            );
        }
    }
}
