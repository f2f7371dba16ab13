//! Generation parity with the official `_sample` loop: greedy decoding (RAS off) over the fixture
//! prompts reproduces every step's mode, raw argmax, forced column, delay counters, the stop step,
//! the delayed frames and the final codes. Works for any fixture set of this format.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::DType;
use higgs_engine::delay::{build_delayed_segment, revert_delay_pattern, Codes};
use higgs_engine::prompt::special_ids;
use higgs_engine::sampling::argmax;
use higgs_engine::state::{GenState, Mode, NextInput, StepEvent};
use higgs_engine::{
    expand_prompt, FinishReason, GenerationParams, PromptSpec, RasParams, SamplingParams,
};
use higgs_model::{ForwardOptions, HiggsAudioModel, LogitsRequest, PositionKind, SeqInput};
use higgs_testkit::{assert_ids_eq, fixture, golden_json, Golden};

mod common;
use common::reference::generate;

fn codes(g: &Golden, name: &str) -> Codes {
    let (nc, _) = g.get(name).dims2().unwrap();
    Codes::new(nc, g.i64s(name).iter().map(|&v| v as u32).collect()).unwrap()
}

/// Raw clip codes from a golden delayed clip matrix (revert, drop BOS/EOS columns; no clipping).
fn raw_clips(g: &Golden, delayed: &str, starts: &str) -> Vec<Codes> {
    if !g.has(delayed) {
        return Vec::new();
    }
    let all = codes(g, delayed);
    let nc = all.num_codebooks;
    let mut st: Vec<usize> = g.i64s(starts).iter().map(|&v| v as usize).collect();
    st.push(all.frames());
    st.windows(2)
        .map(|w| {
            let seg = Codes::new(
                nc,
                (0..nc)
                    .flat_map(|k| all.row(k)[w[0]..w[1]].to_vec())
                    .collect(),
            )
            .unwrap();
            let r = revert_delay_pattern(&seg);
            Codes::new(
                nc,
                (0..nc)
                    .flat_map(|k| r.row(k)[1..r.frames() - 1].to_vec())
                    .collect(),
            )
            .unwrap()
        })
        .collect()
}

struct Case {
    name: String,
    spec: PromptSpec,
    max_new_tokens: usize,
    stop_reason: String,
    num_steps: usize,
}

fn cases(g: &Golden) -> Vec<Case> {
    let j = golden_json("llm/golden.json");
    let mut names: Vec<String> = j["prompts"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let meta = &j["prompts"][&p];
            let serve = meta["path"].as_str().unwrap() == "serve_engine";
            let gp = if serve {
                &j["generation_parameters"]["serve_engine"]
            } else {
                &j["generation_parameters"]["generation_py_client"]
            };
            let ids: Vec<u32> = g
                .i64s(&format!("{p}.inputs.input_ids"))
                .iter()
                .map(|&v| v as u32)
                .collect();
            // Clips in placeholder order: the collator numbers in and out clips together.
            let outs = raw_clips(
                g,
                &format!("{p}.inputs.audio_out_ids"),
                &format!("{p}.inputs.audio_out_ids_start"),
            );
            let ins = raw_clips(
                g,
                &format!("{p}.inputs.audio_in_ids"),
                &format!("{p}.inputs.audio_in_ids_start"),
            );
            let (mut oi, mut ii) = (outs.into_iter(), ins.into_iter());
            let clips = ids
                .iter()
                .filter_map(|&id| match id {
                    128016 => oi.next(),
                    128015 => Some(
                        ii.next()
                            .unwrap_or_else(|| Codes::new(8, vec![0; 8]).unwrap()),
                    ),
                    _ => None,
                })
                .collect();
            Case {
                spec: PromptSpec {
                    ids,
                    clips,
                    audio_in_as_codes: !serve,
                },
                max_new_tokens: gp["max_new_tokens"].as_u64().unwrap() as usize,
                stop_reason: meta["stop"]["stop_reason"].as_str().unwrap().to_string(),
                num_steps: meta["stop"]["num_forward_steps"].as_u64().unwrap() as usize,
                name: p,
            }
        })
        .collect()
}

const STOP: [u32; 2] = [128001, 128009];

#[test]
fn parity_prompt_expansion_and_reference_codes() {
    let model =
        HiggsAudioModel::load(&fixture("llm"), DType::F32, &higgs_testkit::test_device()).unwrap();
    let g = Golden::load("llm/golden.safetensors");
    for c in cases(&g) {
        let p = &c.name;
        let e = expand_prompt(model.config(), &c.spec).unwrap();
        let expanded = g.i64s(&format!("{p}.prefill.expanded_input_ids"));
        assert_ids_eq(
            &format!("{p} expanded ids"),
            &e.seq.ids.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            &expanded,
        );
        let out_mask: Vec<i64> = e
            .seq
            .kinds
            .iter()
            .map(|k| (*k == PositionKind::AudioOut) as i64)
            .collect();
        assert_ids_eq(
            &format!("{p} audio_out_mask"),
            &out_mask,
            &g.i64s(&format!("{p}.prefill.audio_out_mask")),
        );
        let in_mask: Vec<i64> = e
            .seq
            .kinds
            .iter()
            .map(|k| (*k == PositionKind::AudioIn) as i64)
            .collect();
        assert_ids_eq(
            &format!("{p} audio_in mask"),
            &in_mask,
            &g.i64s(&format!("{p}.prefill.audio_in_discrete_codes_mask")),
        );
        // The delay pattern built from raw reference codes equals the collator's.
        let name = format!("{p}.ref_codes");
        if g.has(&name) {
            let raw = codes(&g, &name);
            let d = build_delayed_segment(&raw, 1024, 1025);
            let delayed_name = [
                format!("{p}.inputs.audio_out_ids"),
                format!("{p}.inputs.audio_in_ids"),
            ]
            .into_iter()
            .find(|n| g.has(n))
            .expect("reference codes without a delayed clip");
            let want = codes(&g, &delayed_name);
            assert_eq!(d, want, "{p}: delayed reference codes");
        }
    }
}

#[test]
fn parity_greedy_generation_steps_and_codes() {
    let model =
        HiggsAudioModel::load(&fixture("llm"), DType::F32, &higgs_testkit::test_device()).unwrap();
    let cfg = model.config().clone();
    let nc = cfg.num_codebooks;
    let g = Golden::load("llm/golden.safetensors");
    for c in cases(&g) {
        let p = &c.name;
        let e = expand_prompt(&cfg, &c.spec).unwrap();
        let mut cache = model
            .new_cache(1, e.seq.len() + c.max_new_tokens + 1)
            .unwrap();
        let mut st = GenState::new(
            special_ids(&cfg, STOP.to_vec()),
            e.last_token,
            &e.audio_out_columns,
            c.max_new_tokens,
        );
        let want_mode = g.i64s(&format!("{p}.steps.mode"));
        let want_text_argmax = g.i64s(&format!("{p}.steps.text_argmax"));
        let want_raw = g.i64s(&format!("{p}.steps.audio_argmax_raw"));
        let want_next_tok = g.i64s(&format!("{p}.steps.next_token"));
        let want_next_audio = g.i64s(&format!("{p}.steps.next_audio"));
        let want_delay = g.i64s(&format!("{p}.steps.num_delay_after"));
        let want_remaining = g.i64s(&format!("{p}.steps.num_remaining_delays_after"));
        let mut input = e.seq.clone();
        let mut step = 0;
        while st.finished().is_none() {
            let mode = st.mode();
            assert_eq!(mode as i64, want_mode[step], "{p} step {step}: mode");
            let (text, audio) = st.needs_logits();
            let out = model
                .forward(
                    &[input.clone().with_logits(LogitsRequest {
                        text: text || mode == Mode::AudioInit,
                        audio,
                    })],
                    &mut cache,
                    ForwardOptions::default(),
                )
                .unwrap();
            let (events, next) = if audio {
                let rows = out
                    .audio_logits
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let raw: Vec<u32> = rows.iter().map(|r| argmax(r)).collect();
                assert_ids_eq(
                    &format!("{p} step {step}: raw audio argmax"),
                    &raw.iter().map(|&v| v as i64).collect::<Vec<_>>(),
                    &want_raw[step * nc..(step + 1) * nc],
                );
                st.on_audio_step(&raw)
            } else {
                let l = out
                    .text_logits
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let id = argmax(&l);
                assert_eq!(
                    id as i64, want_text_argmax[step],
                    "{p} step {step}: text argmax"
                );
                st.on_text_step(id)
            };
            let full_token = match mode {
                Mode::AudioInit => cfg.audio_out_token_id,
                Mode::Text => match &next {
                    NextInput::Text(t) => *t,
                    NextInput::Audio(_) => unreachable!(),
                },
                Mode::AudioInProgress => {
                    if events.contains(&StepEvent::SegmentEnd) {
                        cfg.audio_eos_token_id
                    } else {
                        cfg.audio_out_token_id
                    }
                }
            };
            assert_eq!(
                full_token as i64, want_next_tok[step],
                "{p} step {step}: next token"
            );
            let col = events.iter().find_map(|e| match e {
                StepEvent::AudioColumn(c) => Some(c.clone()),
                _ => None,
            });
            match col {
                Some(col) => assert_ids_eq(
                    &format!("{p} step {step}: next audio"),
                    &col.iter().map(|&v| v as i64).collect::<Vec<_>>(),
                    &want_next_audio[step * nc..(step + 1) * nc],
                ),
                None => assert!(
                    want_next_audio[step * nc..(step + 1) * nc]
                        .iter()
                        .all(|&v| v == -1),
                    "{p} step {step}: no audio expected"
                ),
            }
            if mode == Mode::AudioInProgress {
                let (d, r) = st.delay_state();
                assert_eq!(d as i64, want_delay[step], "{p} step {step}: num_delay");
                assert_eq!(
                    r.map_or(-1, |r| r as i64),
                    want_remaining[step],
                    "{p} step {step}: num_remaining_delays"
                );
            }
            let mut s = SeqInput::new(0);
            match next {
                NextInput::Text(id) => {
                    s.push_text(id);
                }
                NextInput::Audio(col) => {
                    s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
                }
            }
            input = s;
            step += 1;
        }
        assert_eq!(step, c.num_steps, "{p}: number of forward steps");
        let reason = match st.finished().unwrap() {
            FinishReason::Stop => "stop_string",
            FinishReason::Length => "max_new_tokens",
        };
        assert_eq!(reason, c.stop_reason, "{p}: stop reason");
        let delayed = &st.delayed_segments()[0];
        assert_eq!(
            delayed,
            &codes(&g, &format!("{p}.gen.audio_delayed")),
            "{p}: delayed frames"
        );
        assert_eq!(
            &st.final_segments()[0],
            &codes(&g, &format!("{p}.gen.audio_codes")),
            "{p}: final codes"
        );
        if g.has(&format!("{p}.gen.text_tokens")) {
            assert_ids_eq(
                &format!("{p} text tokens"),
                &st.text_tokens()
                    .iter()
                    .map(|&v| v as i64)
                    .collect::<Vec<_>>(),
                &g.i64s(&format!("{p}.gen.text_tokens")),
            );
        }

        // The tests' reference loop (the engine's oracle) gives the same result.
        let params = GenerationParams {
            sampling: SamplingParams::GREEDY,
            ras: RasParams::OFF,
            max_new_tokens: c.max_new_tokens,
            seed: Some(0),
            ignore_eos: false,
        };
        let mut events = 0;
        let out = generate(&model, &mut cache, 0, &e, &params, STOP.to_vec(), |_| {
            events += 1
        })
        .unwrap();
        assert_eq!(out.steps, c.num_steps, "{p}: generate() steps");
        assert_eq!(
            &out.segments[0],
            &codes(&g, &format!("{p}.gen.audio_codes")),
            "{p}: generate() codes"
        );
        assert!(events >= out.steps);
    }
}
