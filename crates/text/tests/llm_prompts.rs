//! Parity of the ChatML builder with the prompts a–d of `llm/golden.*` (serve engine and
//! examples/generation.py paths).
#![allow(clippy::unwrap_used)] // tests: a broken fixture should fail loudly.

use higgs_testkit::{fixture, golden_json, Golden};
use higgs_text::wire::{messages_from_wire, AudioSource, WireMessage};
use higgs_text::{
    generation_prompt, AudioKind, AudioRef, GenerationSuffix, Message, Role, TextTokenizer,
};

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(fixture("text-tokenizer/tokenizer.json")).unwrap()
}

#[test]
fn llm_prompt_ids_parity() {
    let tok = tokenizer();
    let meta = golden_json("llm/golden.json");
    let golden = Golden::load("llm/golden.safetensors");
    let prompts = meta["text_prompts"].as_object().expect("text_prompts");
    assert!(!prompts.is_empty());
    for (name, prompt) in prompts {
        let wire: Vec<WireMessage> = serde_json::from_value(prompt["messages"].clone()).unwrap();
        let mut next = 0usize;
        let mut messages = messages_from_wire(&wire, |_, _src: AudioSource<'_>| {
            next += 1;
            Ok(AudioRef(next - 1))
        })
        .unwrap();
        let expected: Vec<u32> = golden
            .i64s(&format!("{name}.inputs.input_ids"))
            .into_iter()
            .map(|x| u32::try_from(x).unwrap())
            .collect();
        let force = meta["prompts"][name]["force_audio_gen"]
            .as_bool()
            .unwrap_or(false);
        let suffix = GenerationSuffix::from_force_audio_gen(force);

        // generation.py records only the context messages (prompt d); the chunk's user turn is
        // the rest of the golden ids: take its text back from them (raw decode is lossless).
        let context = higgs_text::prepare_chatml_sample(&tok, &messages).unwrap();
        if !messages.last().is_some_and(|m| m.role == Role::User) {
            assert!(
                expected.starts_with(&context.ids),
                "{name}: context is not a prefix"
            );
            let user_header = tok
                .encode("<|start_header_id|>user<|end_header_id|>\n\n")
                .unwrap();
            let rest = &expected[context.ids.len()..];
            assert!(
                rest.starts_with(&user_header),
                "{name}: no user turn after the context"
            );
            let body = &rest[user_header.len()..];
            let end = body.iter().position(|&id| id == tok.special().eot).unwrap();
            messages.push(Message::text(Role::User, tok.decode(&body[..end]).unwrap()));
        }

        let built = generation_prompt(&tok, &messages, suffix).unwrap();
        assert_eq!(built.ids, expected, "{name}: input_ids differ");
        assert_eq!(
            tok.decode_clean(&built.ids).unwrap(),
            prompt["prompt_text"].as_str().unwrap(),
            "{name}: decoded prompt text differs"
        );
        // Number and kind of clips match the collator's audio tensors.
        for (kind, key) in [
            (AudioKind::In, "audio_in_ids_start"),
            (AudioKind::Out, "audio_out_ids_start"),
        ] {
            let n = built.audio.iter().filter(|s| s.kind == kind).count();
            let arr = format!("{name}.inputs.{key}");
            let expected_n = if golden.has(&arr) {
                golden.i64s(&arr).len()
            } else {
                0
            };
            // serve_engine drops audio-in codes (return_audio_in_tokens=False): only check out
            // clips there, and in clips where the golden recorded them.
            if kind == AudioKind::Out || golden.has(&arr) {
                assert_eq!(n, expected_n, "{name}: number of {kind:?} clips");
            }
        }
        for slot in &built.audio {
            let placeholder = match slot.kind {
                AudioKind::In => tok.special().audio,
                AudioKind::Out => tok.special().audio_out,
            };
            assert_eq!(built.ids[slot.position], placeholder);
        }
    }
}
