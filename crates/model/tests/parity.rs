//! Parity of the forward pass with the official Python implementation, on the golden fixtures
//! (`$HIGGS_FIXTURES/llm`). Every prompt in the fixture set is checked; shapes come from the
//! fixtures, so any fixture set of the same format (other sizes, layer counts, DualFFN placement)
//! runs through the same code.

use candle_core::{DType, Device, Tensor};
use higgs_model::{ForwardOptions, HiggsAudioModel, LogitsRequest, PositionKind, SeqInput};
use higgs_testkit::{assert_close, fixture, golden_json, Golden};

const TOL: f32 = 1e-4;

fn load_model() -> HiggsAudioModel {
    HiggsAudioModel::load(&fixture("llm"), DType::F32, &Device::Cpu).expect("load fixture model")
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
            let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
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
