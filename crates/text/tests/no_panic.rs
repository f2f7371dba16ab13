//! Property tests: normalisation, chunking and prompt building never panic on arbitrary unicode
//! input, and keep their basic invariants.
#![allow(clippy::unwrap_used)] // tests: a broken fixture should fail loudly.

use higgs_testkit::fixture;
use higgs_text::chunking::{chunk_by_speaker, chunk_by_word, ChunkLanguage};
use higgs_text::normalize::{is_py_whitespace, FINAL_ENDINGS};
use higgs_text::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::OnceLock;

fn tok() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| TextTokenizer::from_file(fixture("text-tokenizer/tokenizer.json")).unwrap())
}

/// Arbitrary text biased towards what the pipeline treats specially.
fn text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        any::<char>().prop_map(String::from),
        "\\PC{0,6}",
        Just("\n".to_string()),
        Just("\n\n".to_string()),
        Just(" ".to_string()),
        Just("\r\n".to_string()),
        Just("\u{1f}\u{3000}\u{a0}".to_string()),
        Just("[SPEAKER1] ".to_string()),
        Just("[SPEAKER10]".to_string()),
        Just("<|speaker_id_start|>".to_string()),
        Just("[laugh]".to_string()),
        Just("[music start]".to_string()),
        Just("°C(".to_string()),
        Just("，。…—《》".to_string()),
        Just("大家好欢迎收听".to_string()),
        Just("これは".to_string()),
        Just("<|eot_id|>".to_string()),
        Just("<|scene_desc_start|>".to_string()),
        Just("<|AUDIO|>".to_string()),
        Just("</SE>".to_string()),
    ];
    prop::collection::vec(fragment, 0..24).prop_map(|v| v.concat())
}

fn library() -> HashMap<String, ReferenceVoice> {
    HashMap::from([
        (
            "a".to_string(),
            ReferenceVoice {
                transcript: "Voice a.".into(),
                audio: AudioRef(0),
            },
        ),
        (
            "b".to_string(),
            ReferenceVoice {
                transcript: "[SPEAKER9] b".into(),
                audio: AudioRef(1),
            },
        ),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_never_panics_and_leaves_no_blank_line(raw in text()) {
        let tags = speaker_tags(&raw);
        let mut sorted = tags.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(&tags, &sorted);
        let norm = normalize_transcript(&raw);
        prop_assert!(!norm.is_empty());
        prop_assert!(norm.split('\n').all(|line| !line.is_empty() && !line.starts_with(is_py_whitespace)));
        prop_assert!(FINAL_ENDINGS.iter().any(|e| norm.ends_with(e)));
        // Idempotent on its own output, except where a tag replacement creates a new tag
        // (e.g. `[` + `[laugh]` + `]`), so only check it never panics.
        let _ = normalize_transcript(&norm);
    }

    #[test]
    fn chunking_never_panics_and_loses_no_word(raw in text(), n in 0usize..5, turns in 0usize..4) {
        let norm = normalize_transcript(&raw);
        for method in [ChunkMethod::None, ChunkMethod::Speaker, ChunkMethod::Word] {
            let cfg = ChunkConfig { method, max_word_num: n, max_num_turns: turns };
            match prepare_chunk_text(&norm, &cfg) {
                Ok(chunks) => prop_assert!(!chunks.is_empty() || method == ChunkMethod::Speaker),
                Err(e) => prop_assert!(n == 0 && method == ChunkMethod::Word, "{e}"),
            }
        }
        let _ = chunk_by_speaker(&raw, turns);
        // Word chunks of one paragraph re-join to it (minus the paragraph mark).
        let mut para = raw.clone();
        while para.contains("\n\n") {
            para = para.replace("\n\n", "\n");
        }
        let n = n.max(1);
        let other = chunk_by_word(&para, n, ChunkLanguage::Other);
        let joined = other.join(" ");
        prop_assert_eq!(joined.strip_suffix("\n\n").unwrap(), para.as_str());
        let zh = chunk_by_word(&para, n, ChunkLanguage::Chinese);
        let joined = zh.concat();
        prop_assert_eq!(joined.strip_suffix("\n\n").unwrap_or(""), para.as_str());
    }

    #[test]
    fn prompt_building_never_panics(
        raw in text(),
        scene in proptest::option::of(text()),
        ref_audio in proptest::option::of(prop_oneof![
            Just("a".to_string()), Just("a,b".to_string()), Just("profile:male_en,b".to_string()),
            Just("nobody".to_string()), Just("profile:nobody".to_string()), Just(String::new()),
        ]),
        in_system in any::<bool>(),
        method in prop_oneof![Just(ChunkMethod::None), Just(ChunkMethod::Speaker), Just(ChunkMethod::Word)],
        buffer in proptest::option::of(0usize..3),
    ) {
        let request = GenerationRequest {
            transcript: raw.clone(),
            scene_prompt: scene,
            voices: ref_audio.as_deref().map(VoiceSpec::parse_list).unwrap_or_default(),
            ref_audio_in_system_message: in_system,
            chunking: ChunkConfig { method, max_word_num: 3, max_num_turns: 2 },
        };
        let profiles = VoiceProfiles::official();
        let Ok(prepared) = prepare_generation(&request, &library(), Some(&profiles)) else {
            // Only unknown voices / profiles may fail.
            prop_assert!(ref_audio.is_some_and(|r| r.contains("nobody") || r.is_empty()));
            return Ok(());
        };
        let mut planner = prepared.into_planner(buffer);
        let mut k = 100;
        while let Some(step) = planner.next_step().unwrap() {
            match step.prompt(tok(), GenerationSuffix::Assistant) {
                Ok(prompt) => {
                    prop_assert_eq!(prompt.audio_refs(), step.context_audio.clone());
                    let s = tok().special();
                    let placeholders = prompt.ids.iter().filter(|&&i| i == s.audio || i == s.audio_out).count();
                    prop_assert_eq!(placeholders, prompt.audio.len());
                }
                // Text that spells an audio placeholder is refused, never rendered.
                Err(TextError::PlaceholderInText { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            planner.record_generated(AudioRef(k)).unwrap();
            k += 1;
        }
        // Arbitrary text as a single message, in every role.
        for role in [Role::System, Role::User, Role::Assistant] {
            let _ = generation_prompt(tok(), &[Message::text(role, raw.clone())], GenerationSuffix::AssistantAudio);
        }
    }
}
