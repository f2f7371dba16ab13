//! Unit tests of the text side: tokenizer and ChatML rendering rules, normalisation, chunking,
//! context building, the long-form planner and the wire formats.
#![allow(clippy::unwrap_used)] // tests: a broken fixture should fail loudly.

use higgs_testkit::{fixture, fixtures_root};
use higgs_text::chunking::{chunk_by_speaker, chunk_by_word, detect_chunk_language, jieba_cut};
use higgs_text::context::{
    resolve_scene_prompt_arg, resolve_transcript_arg, DEFAULT_SCENE_PROMPT,
    MULTISPEAKER_DEFAULT_SYSTEM_MESSAGE,
};
use higgs_text::normalize::{normalize_chinese_punctuation, py_strip};
use higgs_text::tokenizer::clean_up_tokenization;
use higgs_text::wire::{messages_from_json, AudioSource};
use higgs_text::*;
use std::collections::HashMap;
use std::sync::OnceLock;

fn tok() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| TextTokenizer::from_file(fixture("text-tokenizer/tokenizer.json")).unwrap())
}

// ---------------------------------------------------------------- tokenizer & ChatML

#[test]
fn special_tokens_are_atomic_and_found_by_string() {
    let t = tok();
    let s = t.special();
    for (text, id) in [
        (SpecialTokens::BEGIN_OF_TEXT, s.begin_of_text),
        (SpecialTokens::AUDIO, s.audio),
        (SpecialTokens::AUDIO_OUT, s.audio_out),
        (SpecialTokens::AUDIO_OUT_BOS, s.audio_out_bos),
        (SpecialTokens::EOM, s.eom),
        (SpecialTokens::SCENE_DESC_START, s.scene_desc_start),
    ] {
        assert_eq!(t.encode(text).unwrap(), vec![id], "{text}");
        assert_eq!(t.token_to_id(text), Some(id));
    }
    assert_eq!(t.vocab_size(), 128_256);
    assert_eq!(s.stop_tokens(), [s.end_of_text, s.eot]);
}

#[test]
fn tokenizer_without_higgs_tokens_is_a_clear_error() {
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"}}"#;
    let err = TextTokenizer::from_bytes(json.as_bytes(), "tiny.json").unwrap_err();
    assert!(
        matches!(
            err,
            TextError::MissingSpecialToken {
                token: "<|begin_of_text|>",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Higgs"));
    let err = TextTokenizer::from_file("/nonexistent/tokenizer.json").unwrap_err();
    assert!(matches!(err, TextError::TokenizerLoad { .. }), "{err}");
}

#[test]
fn encode_parses_special_strings_and_decode_round_trips() {
    let t = tok();
    let text = "Hi <SE>[Laughter]</SE> 大家好 🎉\n\n  x";
    let ids = t.encode(text).unwrap();
    assert!(
        !ids.contains(&t.special().begin_of_text),
        "no BOS with add_special_tokens=False"
    );
    assert!(ids.contains(&t.token_to_id("<SE>").unwrap()));
    assert_eq!(t.decode(&ids).unwrap(), text);
    assert_eq!(clean_up_tokenization("a , b . c 's"), "a, b. c's");
}

#[test]
fn chatml_pieces_are_encoded_separately() {
    let t = tok();
    let s = t.special();
    let a = AudioRef(7);
    let messages = [Message::new(
        Role::System,
        vec![
            Content::Text("SPEAKER0: ".into()),
            Content::Audio(a),
            Content::Text("\nend".into()),
        ],
    )];
    let p = prepare_chatml_sample(t, &messages).unwrap();
    let mut expected = t
        .encode("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
        .unwrap();
    expected.extend(t.encode("SPEAKER0: ").unwrap());
    let pos = expected.len() + 1;
    expected.extend([s.audio_bos, s.audio, s.audio_eos]);
    expected.extend(t.encode("\nend").unwrap());
    expected.push(s.eot);
    assert_eq!(p.ids, expected);
    assert_eq!(
        p.audio,
        vec![AudioSlot {
            audio: a,
            kind: AudioKind::In,
            position: pos
        }]
    );
    // Adjacent text items are encoded separately: joining them first tokenizes the boundary
    // differently (`"SPEAKER0: "` ends with its own space token).
    let two = [Message::new(
        Role::User,
        vec![
            Content::Text("SPEAKER0: ".into()),
            Content::Text("hello".into()),
        ],
    )];
    let p = prepare_chatml_sample(t, &two).unwrap();
    let mut pieces = t.encode("SPEAKER0: ").unwrap();
    pieces.extend(t.encode("hello").unwrap());
    assert!(p.ids.windows(pieces.len()).any(|w| w == pieces.as_slice()));
    assert_ne!(t.encode("SPEAKER0: hello").unwrap(), pieces);
}

#[test]
fn chatml_bos_once_eom_between_assistants_and_suffixes() {
    let t = tok();
    let s = t.special();
    let messages = [
        Message::text(Role::User, "a"),
        Message::audio(Role::Assistant, AudioRef(0)),
        Message::audio(Role::Assistant, AudioRef(1)),
        Message::text(Role::User, "b"),
    ];
    let p = prepare_chatml_sample(t, &messages).unwrap();
    assert_eq!(p.ids.iter().filter(|&&i| i == s.begin_of_text).count(), 1);
    assert_eq!(p.ids[0], s.begin_of_text);
    assert_eq!(p.ids.iter().filter(|&&i| i == s.eom).count(), 1);
    assert_eq!(p.ids.iter().filter(|&&i| i == s.eot).count(), 3);
    assert_eq!(p.audio_refs(), vec![AudioRef(0), AudioRef(1)]);
    assert!(p
        .audio
        .iter()
        .all(|a| a.kind == AudioKind::Out && p.ids[a.position] == s.audio_out));
    // eom directly after the first assistant's audio_eos.
    let first_out = p.audio[0].position;
    assert_eq!(
        &p.ids[first_out..first_out + 3],
        &[s.audio_out, s.audio_eos, s.eom]
    );

    let plain = generation_prompt(t, &messages, GenerationSuffix::Assistant).unwrap();
    let forced = generation_prompt(t, &messages, GenerationSuffix::AssistantAudio).unwrap();
    let header = t
        .encode("<|start_header_id|>assistant<|end_header_id|>\n\n")
        .unwrap();
    assert!(plain.ids.ends_with(&header));
    assert_eq!(forced.ids.last(), Some(&s.audio_out_bos));
    assert_eq!(&forced.ids[..forced.ids.len() - 1], plain.ids.as_slice());
}

#[test]
fn chatml_recipient_and_rejections() {
    let t = tok();
    let mut m = Message::text(Role::Assistant, "x");
    m.recipient = Some("tool".into());
    let p = prepare_chatml_sample(t, &[m.clone()]).unwrap();
    assert!(p.ids.contains(&t.special().recipient));
    m.role = Role::User;
    assert!(matches!(
        prepare_chatml_sample(t, &[m]).unwrap_err(),
        TextError::RecipientOnNonAssistant { role: "user" }
    ));
    let bad = Message::text(Role::User, "sneaky <|AUDIO_OUT|>");
    let err = prepare_chatml_sample(t, &[bad]).unwrap_err();
    assert!(matches!(err, TextError::PlaceholderInText { .. }), "{err}");
    // Other special tokens in text are parsed, as the reference does.
    assert!(prepare_chatml_sample(t, &[Message::text(Role::User, "<|scene_desc_start|>")]).is_ok());
}

// ---------------------------------------------------------------- normalisation

#[test]
fn speaker_tags_sorted_as_strings_from_raw_text() {
    let raw = "[SPEAKER2] a\n[SPEAKER10] b\n[SPEAKER2] c [SPEAKER1]\n[speaker3] [SPEAKER] x";
    assert_eq!(speaker_tags(raw), ["SPEAKER1", "SPEAKER10", "SPEAKER2"]);
    // Full-width brackets become `[`/`]` only in normalisation: not tags.
    assert!(speaker_tags("【SPEAKER3】 hi").is_empty());
    assert_eq!(normalize_transcript("【SPEAKER3】 hi"), "[SPEAKER3] hi.");
    // `\d` is Unicode Nd, as in Python 3.
    assert_eq!(speaker_tags("[SPEAKER٣] x"), ["SPEAKER٣"]);
}

#[test]
fn chinese_punctuation_table() {
    assert_eq!(normalize_chinese_punctuation("你好，世界。"), "你好, 世界.");
    assert_eq!(
        normalize_chinese_punctuation("“引号”‘单’、—…·「」『』【】《》（）：；？！"),
        "\"引号\"'单',-....\"\"\"\"[]<>():;?!"
    );
}

#[test]
fn normalisation_steps_in_order() {
    assert_eq!(
        normalize_transcript("It is 30°C (hot) [laugh]"),
        "It is 30 degrees Celsius hot <SE>[Laughter]</SE>"
    );
    assert_eq!(
        normalize_transcript("[music start] la [music] [music end]"),
        "<SE_s>[Music]</SE_s> la <SE>[Music]</SE> <SE_e>[Music]</SE_e>"
    );
    // Blank lines vanish, whitespace runs collapse, python whitespace (U+001F, U+3000) included.
    assert_eq!(
        normalize_transcript("  a \t b \n\n \u{3000}\n c\u{1f}d  \r\n"),
        "a b\nc d."
    );
    // Final punctuation.
    assert_eq!(normalize_transcript("ok?"), "ok?");
    assert_eq!(normalize_transcript("said 'hi'"), "said 'hi'");
    assert_eq!(
        normalize_transcript("[humming start]"),
        "<SE_s>[Humming]</SE_s>."
    );
    assert_eq!(normalize_transcript("end [cough]"), "end <SE>[Cough]</SE>");
    assert_eq!(normalize_transcript(""), ".");
    assert_eq!(normalize_transcript(" \n\n "), ".");
}

#[test]
fn multi_speaker_transcript_normalises_per_line() {
    let raw = "[SPEAKER0]   Hello（world）！\n\n\n[SPEAKER1] Bye…  ";
    assert_eq!(
        normalize_transcript(raw),
        "[SPEAKER0] Hello world !\n[SPEAKER1] Bye..."
    );
    assert_eq!(py_strip("\u{85} x \u{a0}"), "x");
}

// ---------------------------------------------------------------- chunking

#[test]
fn speaker_chunks_with_continuations_and_turn_groups() {
    let text = "intro line\n[SPEAKER0] a\ncontinued\n[SPEAKER1] b\n<|speaker_id_start|>SPEAKER0<|speaker_id_end|> c";
    assert_eq!(
        chunk_by_speaker(text, 1),
        [
            "intro line",
            "[SPEAKER0] a\ncontinued",
            "[SPEAKER1] b",
            "<|speaker_id_start|>SPEAKER0<|speaker_id_end|> c"
        ]
    );
    assert_eq!(
        chunk_by_speaker("[SPEAKER0] a\n[SPEAKER1] b\n[SPEAKER0] c", 2),
        ["[SPEAKER0] a\n[SPEAKER1] b", "[SPEAKER0] c"]
    );
    assert_eq!(
        chunk_by_speaker("[SPEAKER0] a\n[SPEAKER1] b", 0),
        ["[SPEAKER0] a", "[SPEAKER1] b"]
    );
    assert!(chunk_by_speaker("", 1).is_empty());
}

#[test]
fn word_chunks_split_on_single_spaces_and_mark_paragraph_ends() {
    let other = ChunkLanguage::Other;
    assert_eq!(
        chunk_by_word("a b c d e", 2, other),
        ["a b", "c d", "e\n\n"]
    );
    assert_eq!(chunk_by_word("a b\n\nc", 5, other), ["a b\n\n", "c\n\n"]);
    // Newlines stay inside words; double spaces give empty words.
    assert_eq!(chunk_by_word("a\nb c", 1, other), ["a\nb", "c\n\n"]);
    assert_eq!(chunk_by_word("a  b", 2, other), ["a ", "b\n\n"]);
    assert_eq!(chunk_by_word("", 3, other), ["\n\n"]);
}

#[test]
fn chinese_word_chunks_use_jieba_precise_mode() {
    // The canonical example of python jieba's README (precise mode).
    assert_eq!(
        jieba_cut("我来到北京清华大学"),
        ["我", "来到", "北京", "清华大学"]
    );
    assert_eq!(
        chunk_by_word("我来到北京清华大学", 2, ChunkLanguage::Chinese),
        ["我来到", "北京清华大学\n\n"]
    );
    assert_eq!(
        detect_chunk_language("大家好, 欢迎收听本期的节目!"),
        ChunkLanguage::Chinese
    );
    assert_eq!(
        detect_chunk_language("Deep learning is a subset of machine learning."),
        ChunkLanguage::Other
    );
    assert_eq!(
        detect_chunk_language("これは日本語の文章です。"),
        ChunkLanguage::Other
    );
    let cfg = ChunkConfig {
        method: ChunkMethod::Word,
        max_word_num: 3,
        max_num_turns: 1,
    };
    let chunks = prepare_chunk_text("今天天气很好, 我们去公园散步吧.", &cfg).unwrap();
    assert!(chunks.len() > 1);
    assert_eq!(chunks.concat(), "今天天气很好, 我们去公园散步吧.\n\n");
}

#[test]
fn chunk_config_validation_and_parsing() {
    let cfg = ChunkConfig {
        method: ChunkMethod::Word,
        max_word_num: 0,
        max_num_turns: 1,
    };
    assert!(matches!(
        prepare_chunk_text("a", &cfg).unwrap_err(),
        TextError::InvalidChunkSize {
            field: "chunk_max_word_num",
            value: 0
        }
    ));
    assert_eq!(
        "speaker".parse::<ChunkMethod>().unwrap(),
        ChunkMethod::Speaker
    );
    assert_eq!("none".parse::<ChunkMethod>().unwrap(), ChunkMethod::None);
    assert!("words".parse::<ChunkMethod>().is_err());
    assert_eq!(
        prepare_chunk_text("x\n\ny", &ChunkConfig::default()).unwrap(),
        ["x\n\ny"]
    );
}

// ---------------------------------------------------------------- context (generation.py)

fn library() -> HashMap<String, ReferenceVoice> {
    HashMap::from([
        (
            "alpha".to_string(),
            ReferenceVoice {
                transcript: "  Alpha says hi.\n".into(),
                audio: AudioRef(10),
            },
        ),
        (
            "beta".to_string(),
            ReferenceVoice {
                transcript: "Beta here.".into(),
                audio: AudioRef(20),
            },
        ),
    ])
}

fn texts(m: &Message) -> Vec<&str> {
    m.content
        .iter()
        .filter_map(|c| match c {
            Content::Text(t) => Some(t.as_str()),
            Content::Audio(_) => None,
        })
        .collect()
}

#[test]
fn multispeaker_default_alternates_over_string_sorted_tags() {
    let tags = speaker_tags("[SPEAKER2] a\n[SPEAKER10] b\n[SPEAKER1] c");
    let opts = ContextOptions {
        scene_prompt: None,
        voices: &[],
        ref_audio_in_system_message: false,
        speaker_tags: &tags,
    };
    let ctx = prepare_generation_context(&opts, &library(), None).unwrap();
    assert_eq!(ctx.messages.len(), 1);
    assert_eq!(
        texts(&ctx.messages[0]),
        [format!(
            "{MULTISPEAKER_DEFAULT_SYSTEM_MESSAGE}\n\n<|scene_desc_start|>\nSPEAKER1: feminine\nSPEAKER10: masculine\nSPEAKER2: feminine\n<|scene_desc_end|>"
        )]
    );
    // An empty scene counts as none (`if scene_prompt:`).
    let opts = ContextOptions {
        scene_prompt: Some(""),
        speaker_tags: &[],
        ..opts
    };
    let ctx = prepare_generation_context(&opts, &library(), None).unwrap();
    assert_eq!(
        texts(&ctx.messages[0]),
        ["Generate audio following instruction."]
    );
}

#[test]
fn reference_voices_as_turns_without_scene_have_no_system_message() {
    let voices = VoiceSpec::parse_list("alpha,beta");
    let opts = ContextOptions {
        scene_prompt: None,
        voices: &voices,
        ref_audio_in_system_message: false,
        speaker_tags: &[],
    };
    let ctx = prepare_generation_context(&opts, &library(), None).unwrap();
    assert_eq!(ctx.reference_audio, [AudioRef(10), AudioRef(20)]);
    let roles: Vec<Role> = ctx.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::User, Role::Assistant]
    );
    assert_eq!(texts(&ctx.messages[0]), ["[SPEAKER0] Alpha says hi."]);
    assert_eq!(ctx.messages[3].content, [Content::Audio(AudioRef(20))]);
    // A single voice gets no speaker prefix.
    let one = VoiceSpec::parse_list("beta");
    let ctx = prepare_generation_context(
        &ContextOptions {
            voices: &one,
            ..opts
        },
        &library(),
        None,
    )
    .unwrap();
    assert_eq!(texts(&ctx.messages[0]), ["Beta here."]);
}

#[test]
fn profiles_force_the_system_message_form() {
    let voices = VoiceSpec::parse_list("profile: male_en,alpha");
    assert_eq!(
        voices,
        [
            VoiceSpec::Profile("male_en".into()),
            VoiceSpec::Reference("alpha".into())
        ]
    );
    let profiles = VoiceProfiles::official();
    let opts = ContextOptions {
        scene_prompt: Some("Scene."),
        voices: &voices,
        ref_audio_in_system_message: false,
        speaker_tags: &[],
    };
    let ctx = prepare_generation_context(&opts, &library(), Some(&profiles)).unwrap();
    assert_eq!(ctx.messages.len(), 1);
    let sys = &ctx.messages[0];
    assert_eq!(sys.role, Role::System);
    assert_eq!(
        sys.content,
        [
            Content::Text(format!(
                "Generate audio following instruction.\n\n<|scene_desc_start|>\nScene.\n\nSPEAKER0: {}\nSPEAKER1: ",
                profiles.get("male_en").unwrap()
            )),
            Content::Audio(AudioRef(10)),
            Content::Text("\n<|scene_desc_end|>".into()),
        ]
    );
    assert_eq!(ctx.reference_audio, [AudioRef(10)]);

    let unknown = VoiceSpec::parse_list("profile:nobody");
    let err = prepare_generation_context(
        &ContextOptions {
            voices: &unknown,
            ..opts
        },
        &library(),
        Some(&profiles),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("male_en"),
        "lists known profiles: {err}"
    );
    let err = prepare_generation_context(
        &ContextOptions {
            voices: &unknown,
            ..opts
        },
        &library(),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, TextError::NoProfiles(_)));
    let missing = VoiceSpec::parse_list("gamma");
    let err = prepare_generation_context(
        &ContextOptions {
            voices: &missing,
            ..opts
        },
        &library(),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, TextError::UnknownVoice { .. }) && err.to_string().contains("alpha"),
        "{err}"
    );
}

#[test]
fn official_profiles_match_the_shared_file() {
    let official = VoiceProfiles::official();
    assert_eq!(official.names().count(), 4);
    let shared = fixtures_root().join("../voices/profile.yaml");
    if shared.exists() {
        assert_eq!(VoiceProfiles::from_file(shared).unwrap(), official);
    }
    assert!(VoiceProfiles::from_yaml_str("nope: 1", "x").is_err());
    let numeric = VoiceProfiles::from_yaml_str("profiles:\n  n: 5\n", "x").unwrap();
    assert_eq!(numeric.get("n"), Some("5"));
}

#[test]
fn scene_and_transcript_arguments() {
    assert_eq!(
        resolve_scene_prompt_arg(None).unwrap().as_deref(),
        Some(DEFAULT_SCENE_PROMPT)
    );
    assert_eq!(resolve_scene_prompt_arg(Some("empty")).unwrap(), None);
    assert!(matches!(
        resolve_scene_prompt_arg(Some("/nonexistent/scene.txt")).unwrap_err(),
        TextError::ScenePromptNotFound(_)
    ));
    let dir = std::env::temp_dir().join(format!("higgs-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scene = dir.join("scene.txt");
    std::fs::write(&scene, "  In a cave.\n").unwrap();
    assert_eq!(
        resolve_scene_prompt_arg(scene.to_str()).unwrap().as_deref(),
        Some("In a cave.")
    );
    std::fs::write(&scene, " \n").unwrap();
    assert_eq!(resolve_scene_prompt_arg(scene.to_str()).unwrap(), None);
    let transcript = dir.join("t.txt");
    std::fs::write(&transcript, "\n [SPEAKER0] hi \n").unwrap();
    assert_eq!(
        resolve_transcript_arg(transcript.to_str().unwrap()).unwrap(),
        "[SPEAKER0] hi"
    );
    assert_eq!(resolve_transcript_arg(" literal ").unwrap(), " literal ");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- long-form planner

fn planner(buffer: Option<usize>) -> LongFormPlanner {
    let request = GenerationRequest {
        transcript: "one two three four five six seven".into(),
        scene_prompt: None,
        voices: VoiceSpec::parse_list("alpha"),
        ref_audio_in_system_message: false,
        chunking: ChunkConfig {
            method: ChunkMethod::Word,
            max_word_num: 2,
            max_num_turns: 1,
        },
    };
    let prepared = prepare_generation(&request, &library(), None).unwrap();
    assert_eq!(
        prepared.chunks,
        ["one two", "three four", "five six", "seven.\n\n"]
    );
    prepared.into_planner(buffer)
}

/// Runs the whole loop; returns each step's (messages, context audio) and checks every rendered
/// prompt's placeholder order against the step's context audio.
fn run(mut p: LongFormPlanner) -> Vec<ChunkStep> {
    let mut steps = Vec::new();
    while let Some(step) = p.next_step().unwrap() {
        let prompt = step.prompt(tok(), GenerationSuffix::Assistant).unwrap();
        assert_eq!(prompt.audio_refs(), step.context_audio);
        p.record_generated(AudioRef(100 + step.index)).unwrap();
        steps.push(step);
    }
    assert!(p.is_done());
    steps
}

#[test]
fn planner_keeps_everything_without_buffer() {
    let p = planner(None);
    assert_eq!(p.num_chunks(), 4);
    let steps = run(p);
    assert_eq!(steps.len(), 4);
    let last = &steps[3];
    assert_eq!(
        last.context_audio,
        [AudioRef(10), AudioRef(100), AudioRef(101), AudioRef(102)]
    );
    // base (user ref, assistant ref) + 3 × (user chunk, assistant audio) + user chunk
    assert_eq!(last.messages.len(), 2 + 6 + 1);
    assert_eq!(last.messages[2], Message::text(Role::User, "one two"));
    assert_eq!(
        last.messages[3],
        Message::audio(Role::Assistant, AudioRef(100))
    );
    assert_eq!(
        last.messages.last(),
        Some(&Message::text(Role::User, "seven.\n\n"))
    );
    // Buffer size 0 behaves like no buffer (Python's `xs[-0:]` keeps all).
    assert_eq!(run(planner(Some(0))), steps);
}

#[test]
fn planner_buffer_keeps_last_chunks_and_references() {
    let steps = run(planner(Some(1)));
    assert_eq!(steps[1].context_audio, [AudioRef(10), AudioRef(100)]);
    assert_eq!(steps[2].context_audio, [AudioRef(10), AudioRef(101)]);
    assert_eq!(steps[3].context_audio, [AudioRef(10), AudioRef(102)]);
    assert_eq!(
        steps[3].messages[2..],
        [
            Message::text(Role::User, "five six"),
            Message::audio(Role::Assistant, AudioRef(102)),
            Message::text(Role::User, "seven.\n\n"),
        ]
    );
    let steps = run(planner(Some(2)));
    assert_eq!(
        steps[3].context_audio,
        [AudioRef(10), AudioRef(101), AudioRef(102)]
    );
    assert_eq!(steps[3].messages.len(), 2 + 4 + 1);
}

#[test]
fn planner_enforces_call_order() {
    let mut p = planner(None);
    assert!(matches!(
        p.record_generated(AudioRef(1)),
        Err(TextError::Planner(_))
    ));
    p.next_step().unwrap().unwrap();
    assert!(matches!(p.next_step(), Err(TextError::Planner(_))));
    p.record_generated(AudioRef(1)).unwrap();
    assert_eq!(p.generated_audio(), [AudioRef(1)]);
    assert_eq!(p.generation_messages().len(), 2);
    assert!(!p.is_done());
}

#[test]
fn planner_evicts_the_oldest_generated_chunk_of_the_pending_step() {
    let mut p = planner(None);
    assert!(matches!(p.evict_oldest(), Err(TextError::Planner(_))));
    p.next_step().unwrap().unwrap();
    // Nothing generated yet: the reference audio is never dropped.
    assert!(p.evict_oldest().unwrap().is_none());
    p.record_generated(AudioRef(100)).unwrap();
    p.next_step().unwrap().unwrap();
    p.record_generated(AudioRef(101)).unwrap();
    let third = p.next_step().unwrap().unwrap();
    assert_eq!(
        third.context_audio,
        [AudioRef(10), AudioRef(100), AudioRef(101)]
    );
    let step = p.evict_oldest().unwrap().unwrap();
    assert_eq!(step.index, 2);
    assert_eq!(step.context_audio, [AudioRef(10), AudioRef(101)]);
    assert_eq!(
        step.messages[2..],
        [
            Message::text(Role::User, "three four"),
            Message::audio(Role::Assistant, AudioRef(101)),
            Message::text(Role::User, "five six"),
        ]
    );
    let prompt = step.prompt(tok(), GenerationSuffix::Assistant).unwrap();
    assert_eq!(prompt.audio_refs(), step.context_audio);
    let step = p.evict_oldest().unwrap().unwrap();
    assert_eq!(step.context_audio, [AudioRef(10)]);
    assert_eq!(step.messages.len(), 2 + 1);
    assert!(p.evict_oldest().unwrap().is_none());
    // The loop goes on from the smaller context.
    p.record_generated(AudioRef(102)).unwrap();
    let last = p.next_step().unwrap().unwrap();
    assert_eq!(last.context_audio, [AudioRef(10), AudioRef(102)]);
}

// ---------------------------------------------------------------- wire formats

#[test]
fn openai_and_serve_engine_messages_map_to_the_same_types() {
    let json = r#"[
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "copy this voice"},
                                     {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]},
        {"role": "assistant", "content": [{"type": "audio_url", "audio_url": {"url": "https://x/a.wav"}}]},
        {"role": "assistant", "content": {"type": "audio", "audio_url": "ref.wav"}},
        {"role": "user", "content": ["plain", {"type": "audio", "raw_audio": "AAAA"}]},
        {"role": "assistant", "content": null}
    ]"#;
    let mut seen = Vec::new();
    let messages = messages_from_json(json, |site, source| {
        seen.push((site.message, site.role, format!("{source:?}")));
        Ok(AudioRef(seen.len() - 1))
    })
    .unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen[0].2,
        format!(
            "{:?}",
            AudioSource::Base64 {
                data: "UklGRg==",
                format: Some("wav")
            }
        )
    );
    assert_eq!(
        seen[1].2,
        format!("{:?}", AudioSource::Url("https://x/a.wav"))
    );
    assert_eq!(
        seen[3].2,
        format!(
            "{:?}",
            AudioSource::Base64 {
                data: "AAAA",
                format: None
            }
        )
    );
    assert_eq!(messages[4].content[0], Content::Text("plain".into()));
    assert!(messages[5].content.is_empty());
    let p = prepare_chatml_sample(tok(), &messages).unwrap();
    let kinds: Vec<AudioKind> = p.audio.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [AudioKind::In, AudioKind::Out, AudioKind::Out, AudioKind::In]
    );
    assert_eq!(
        p.audio_refs(),
        [AudioRef(0), AudioRef(1), AudioRef(2), AudioRef(3)]
    );

    let err = messages_from_json(r#"[{"role": "tool", "content": "x"}]"#, |_, _| {
        Ok(AudioRef(0))
    })
    .unwrap_err();
    assert!(matches!(err, TextError::UnknownRole(_)));
    assert!(messages_from_json("{", |_, _| Ok(AudioRef(0))).is_err());
}
