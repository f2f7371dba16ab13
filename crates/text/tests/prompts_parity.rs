//! Parity with `prompts/golden.json`: examples/generation.py `main()` run on recorded inputs
//! (speaker tags, normalised transcript, chunks, context messages, the first chunk's input ids
//! and the audio clips in placeholder order). Iterates over whatever cases the file holds.
#![allow(clippy::unwrap_used)] // tests: a broken fixture should fail loudly.

use higgs_testkit::{fixture, fixtures_root, golden_json};
use higgs_text::wire::{messages_from_wire, WireMessage};
use higgs_text::{
    prepare_generation, AudioKind, AudioRef, ChunkConfig, ChunkMethod, Content, GenerationRequest,
    GenerationSuffix, Message, ReferenceVoice, Role, TextTokenizer, VoiceProfiles, VoiceSpec,
};
use serde_json::Value;
use std::collections::HashMap;

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(fixture("text-tokenizer/tokenizer.json")).unwrap()
}

/// The profile file the golden run used (the official profile.yaml, shipped in shared/voices);
/// the built-in copy of the same file otherwise.
fn profiles() -> VoiceProfiles {
    let shared = fixtures_root().join("../voices/profile.yaml");
    if shared.exists() {
        VoiceProfiles::from_file(shared).unwrap()
    } else {
        VoiceProfiles::official()
    }
}

/// A message as (role, items) with audio items reduced to `None`: handles are checked separately
/// through the audio codes.
fn shape(m: &Message) -> (Role, Vec<Option<String>>) {
    let items = m
        .content
        .iter()
        .map(|c| match c {
            Content::Text(t) => Some(t.clone()),
            Content::Audio(_) => None,
        })
        .collect();
    (m.role, items)
}

fn golden_messages(v: &Value) -> Vec<Message> {
    let wire: Vec<WireMessage> = serde_json::from_value(v.clone()).unwrap();
    messages_from_wire(&wire, |_, _| Ok(AudioRef(usize::MAX))).unwrap()
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// The voice library of a case: voice transcripts are not stored in the golden file except as
/// the recorded user reference turns, so they are read back from there (in voice order, without
/// the `[SPEAKERi] ` prefix the reference adds for several voices). Handles are the voice index
/// among reference (non-profile) voices, the reference's `audio_ids` order.
fn voice_library(
    voices: &[VoiceSpec],
    context: &[Message],
) -> (HashMap<String, ReferenceVoice>, Vec<String>) {
    let user_turns: Vec<String> = context
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| match m.content.as_slice() {
            [Content::Text(t)] => t.clone(),
            other => panic!("unexpected reference user turn {other:?}"),
        })
        .collect();
    let mut library = HashMap::new();
    let mut names = Vec::new();
    let mut k = 0;
    for (i, spec) in voices.iter().enumerate() {
        let VoiceSpec::Reference(name) = spec else {
            continue;
        };
        let transcript = match user_turns.get(k) {
            Some(t) if voices.len() > 1 => t
                .strip_prefix(&format!("[SPEAKER{i}] "))
                .expect("speaker prefix")
                .to_string(),
            Some(t) => t.clone(),
            None => "transcript not used in system-message mode".to_string(),
        };
        library.insert(
            name.clone(),
            ReferenceVoice {
                transcript,
                audio: AudioRef(k),
            },
        );
        names.push(name.clone());
        k += 1;
    }
    (library, names)
}

/// The collator's clip layout: `[bos] + codes + [eos]`, then the delay pattern (row k shifted
/// right by k, bos-filled lower left, eos-filled upper right); clips concatenated in time.
fn collate(clips: &[&Vec<Vec<i64>>], n_cb: usize, bos: i64, eos: i64) -> (Vec<Vec<i64>>, Vec<i64>) {
    let mut rows = vec![Vec::new(); n_cb];
    let mut starts = Vec::new();
    for clip in clips {
        starts.push(rows[0].len() as i64);
        let t = clip[0].len();
        for (k, row) in rows.iter_mut().enumerate() {
            let mut with_ends = vec![bos];
            with_ends.extend(&clip[k]);
            with_ends.push(eos);
            row.extend(std::iter::repeat_n(bos, k));
            row.extend(with_ends);
            row.extend(std::iter::repeat_n(eos, n_cb - 1 - k));
            assert_eq!(clip[k].len(), t);
        }
    }
    (rows, starts)
}

fn as_matrix(v: &Value) -> Option<Vec<Vec<i64>>> {
    v.as_array().map(|rows| {
        rows.iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect()
    })
}

fn as_ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn generation_py_prompts_parity() {
    let tok = tokenizer();
    let profiles = profiles();
    let golden = golden_json("prompts/golden.json");
    let cfg = &golden["model_config_used"];
    let n_cb = cfg["audio_num_codebooks"].as_u64().unwrap() as usize;
    let bos = cfg["audio_stream_bos_id"].as_i64().unwrap();
    let eos = cfg["audio_stream_eos_id"].as_i64().unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(!cases.is_empty());

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let inputs = &case["inputs"];
        let voices = opt_str(&inputs["ref_audio"])
            .map(|r| VoiceSpec::parse_list(&r))
            .unwrap_or_default();
        let expected_context = golden_messages(&case["context_messages"]);
        let (library, voice_names) = voice_library(&voices, &expected_context);
        let method = match inputs["chunk_method"].as_str() {
            None => ChunkMethod::None,
            Some(m) => m.parse().unwrap(),
        };
        let request = GenerationRequest {
            transcript: inputs["transcript"].as_str().unwrap().to_string(),
            scene_prompt: opt_str(&inputs["scene_prompt"]),
            voices,
            ref_audio_in_system_message: inputs["ref_audio_in_system_message"]
                .as_bool()
                .unwrap_or(false),
            chunking: ChunkConfig {
                method,
                max_word_num: inputs["chunk_max_word_num"].as_u64().unwrap_or(200) as usize,
                max_num_turns: inputs["chunk_max_num_turns"].as_u64().unwrap_or(1) as usize,
            },
        };
        let prepared = prepare_generation(&request, &library, Some(&profiles)).unwrap();

        let tags: Vec<String> = serde_json::from_value(case["speaker_tags"].clone()).unwrap();
        assert_eq!(prepared.speaker_tags, tags, "{name}: speaker tags");
        assert_eq!(
            prepared.normalized_transcript,
            case["normalized_transcript"].as_str().unwrap(),
            "{name}: normalised transcript"
        );
        let chunks: Vec<String> = serde_json::from_value(case["chunks"].clone()).unwrap();
        assert_eq!(prepared.chunks, chunks, "{name}: chunks");
        assert_eq!(
            prepared
                .context
                .messages
                .iter()
                .map(shape)
                .collect::<Vec<_>>(),
            expected_context.iter().map(shape).collect::<Vec<_>>(),
            "{name}: context messages"
        );

        // First chunk through the chunk loop, as HiggsAudioModelClient.generate builds it.
        let mut planner = prepared.into_planner(None);
        let step = planner.next_step().unwrap().expect("at least one chunk");
        let prompt = step.prompt(&tok, GenerationSuffix::Assistant).unwrap();
        let first = &case["first_chunk"];
        let expected_ids = as_ids(&first["input_ids"]);
        let ids: Vec<i64> = prompt.ids.iter().map(|&x| i64::from(x)).collect();
        assert_eq!(ids, expected_ids, "{name}: first chunk input_ids");
        assert_eq!(
            prompt.audio_refs(),
            step.context_audio,
            "{name}: clip order"
        );
        if let Some(text) = first["prompt_text"].as_str() {
            assert_eq!(
                tok.decode_clean(&prompt.ids).unwrap(),
                text,
                "{name}: prompt text"
            );
        }

        // Audio clips, per kind, in placeholder order, exactly as the collator laid them out.
        let codes = &case["reference_audio_codes"];
        for (kind, key) in [(AudioKind::In, "audio_in"), (AudioKind::Out, "audio_out")] {
            let clips: Vec<Vec<Vec<i64>>> = prompt
                .audio
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| as_matrix(&codes[&voice_names[s.audio.0]]).expect("codes of the voice"))
                .collect();
            let expected = as_matrix(&first[format!("{key}_ids")]);
            let expected_starts = first[format!("{key}_ids_start")]
                .as_array()
                .map(|_| as_ids(&first[format!("{key}_ids_start")]));
            if clips.is_empty() {
                assert!(
                    expected.is_none(),
                    "{name}: unexpected {key} clips in the golden"
                );
                continue;
            }
            let refs: Vec<&Vec<Vec<i64>>> = clips.iter().collect();
            let (rows, starts) = collate(&refs, n_cb, bos, eos);
            assert_eq!(Some(rows), expected, "{name}: {key}_ids");
            assert_eq!(Some(starts), expected_starts, "{name}: {key}_ids_start");
        }
        for slot in &prompt.audio {
            let id = match slot.kind {
                AudioKind::In => tok.special().audio,
                AudioKind::Out => tok.special().audio_out,
            };
            assert_eq!(prompt.ids[slot.position], id, "{name}: slot position");
        }
    }
}
