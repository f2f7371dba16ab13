//! A transformers-native checkpoint saved without a text head (`use_text_head=False`, what
//! `HiggsAudioV2ForConditionalGeneration.save_pretrained` writes by default) served end to end on
//! the CPU: the engine forces every prompt into audio and the request ends on the audio EOS.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::{DType, Device, IndexOp, Tensor};
use higgs_codec::Codec;
use higgs_engine::{
    start, EngineConfig, EngineHandle, EngineParts, Event, GenerateRequest, GenerationError,
    GenerationParams, Prompting, RasParams, SamplingParams, StopReason, Usage,
};
use higgs_model::random::{write_tokenizer, Preset, RandomCheckpoint};
use higgs_model::{CheckpointLayout, HiggsAudioModel};
use higgs_text::{Message, Role, TextTokenizer};
use std::path::Path;

const MAX_NEW_TOKENS: usize = 150;

/// Random weights never pick the stream EOS in a few dozen steps: make the last codebook's EOS
/// row 1.5 × one of its code rows, so that greedy decoding picks EOS on the first step where that
/// code's logit is high enough to win (here after ~30 steps; larger factors end the segment
/// right after the ramp-in, before any whole frame). The last codebook is sampled only once the
/// delay-pattern ramp-in is over, so frames exist before the segment ends.
fn make_eos_reachable(dir: &Path, num_codebooks: usize, rows: usize) {
    let path = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let head = t.remove("audio_lm_head.weight").unwrap();
    let last = (num_codebooks - 1) * rows;
    let eos = last + rows - 1;
    let scaled = (head.i(last..last + 1).unwrap() * 1.5).unwrap();
    let head = Tensor::cat(
        &[head.i(..eos).unwrap(), scaled, head.i(eos + 1..).unwrap()],
        0,
    )
    .unwrap();
    t.insert("audio_lm_head.weight".into(), head);
    candle_core::safetensors::save(&t, &path).unwrap();
}

fn engine(root: &Path) -> EngineHandle {
    let (model_dir, codec_dir) = (root.join("model"), root.join("codec"));
    let mut ck = RandomCheckpoint::new(Preset::Tiny, CheckpointLayout::Hf);
    ck.text_head = false;
    ck.write(&model_dir).unwrap();
    write_tokenizer(&model_dir, None).unwrap();
    higgs_codec::write_random_checkpoint(
        &codec_dir,
        higgs_codec::Preset::Tiny,
        higgs_codec::CheckpointLayout::Hf,
        1,
    )
    .unwrap();
    let g = &ck.geometry;
    make_eos_reachable(&model_dir, g.num_codebooks, g.codebook_size + 2);
    let model = HiggsAudioModel::load(&model_dir, DType::F32, &Device::Cpu).unwrap();
    assert!(!model.has_text_head());
    let parts = EngineParts {
        model,
        codec: Codec::load(&codec_dir, &Device::Cpu).unwrap(),
        tokenizer: TextTokenizer::from_model_dir(&model_dir).unwrap(),
        voices: None,
    };
    let cfg = EngineConfig {
        max_running: 2,
        max_seq_len: 256,
        max_queue: 4,
        ..Default::default()
    };
    let h = start(cfg, parts).unwrap().0;
    assert!(h.wait_ready(std::time::Duration::from_secs(60)));
    h
}

fn request(force_audio: bool) -> GenerateRequest {
    GenerateRequest {
        prompting: Prompting::Messages {
            messages: vec![
                Message::text(Role::System, "Generate audio following instruction."),
                Message::text(Role::User, "Hello there."),
            ],
            clips: vec![],
        },
        params: GenerationParams {
            sampling: SamplingParams::GREEDY,
            ras: RasParams::OFF,
            max_new_tokens: MAX_NEW_TOKENS,
            seed: Some(1),
            ignore_eos: false,
        },
        force_audio,
        timeout: None,
        request_id: None,
    }
}

struct Outcome {
    text: Vec<u32>,
    audio: Vec<f32>,
    reason: StopReason,
    usage: Usage,
}

fn run(h: &EngineHandle, req: GenerateRequest) -> Result<Outcome, GenerationError> {
    let mut s = h.submit(req).unwrap();
    let (mut text, mut audio) = (Vec::new(), Vec::new());
    while let Some(e) = s.next_blocking() {
        match e {
            Event::Text { ids, .. } => text.extend(ids),
            Event::Audio { samples, .. } => audio.extend(samples),
            Event::Finished { reason, usage, .. } => {
                return Ok(Outcome {
                    text,
                    audio,
                    reason,
                    usage,
                })
            }
            Event::Failed(e) => return Err(e),
            _ => {}
        }
    }
    panic!("the stream ended without Finished or Failed")
}

#[test]
fn without_a_text_head_generation_is_forced_into_audio_and_ends_on_the_audio_eos() {
    let root = tempfile::tempdir().unwrap();
    let h = engine(root.path());
    // A request that does not ask for audio: with a text head the model would first sample text.
    // Any text-logits request would fail the forward (`ForwardError::NoTextHead`), so finishing
    // at all means none was made.
    let free = run(&h, request(false)).unwrap();
    // The prompt ended in <|audio_out_bos|>: the first generated token is the forced
    // <|AUDIO_OUT|> of AUDIO_INIT, and the last the <|audio_eos|> that ends the segment.
    assert_eq!(free.text, vec![128016, 128012], "text tokens");
    assert_eq!(free.reason, StopReason::Stop);
    assert!(free.usage.audio_frames > 0, "{:?}", free.usage);
    assert!(
        free.usage.completion_tokens < MAX_NEW_TOKENS,
        "ended on the audio EOS, not on max_new_tokens: {:?}",
        free.usage
    );
    assert_eq!(
        free.audio.len(),
        free.usage.audio_frames * 960,
        "every frame decoded"
    );
    // Exactly what `force_audio` gives: same prompt (one token longer than without the
    // suffix would be), same audio.
    let forced = run(&h, request(true)).unwrap();
    assert_eq!(forced.usage, free.usage);
    assert_eq!(forced.text, free.text);
    assert_eq!(forced.audio, free.audio);
    // Stats are published after the step that sent `Finished`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.stats().requests_finished < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stats = h.stats();
    assert_eq!((stats.requests_finished, stats.requests_failed), (2, 0));
    h.shutdown();
}
