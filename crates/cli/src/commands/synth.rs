//! `higgs-serve synth`: text in, speech out, the way the reference CLI (`examples/generation.py`)
//! does it, with a progress bar.

use anyhow::{bail, Context, Result};
use clap::Args;
use higgs_engine::tts::{SynthRequest, Synthesizer};
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{GenerationParams, RasParams, SamplingParams};
use higgs_text::{ChunkConfig, ChunkMethod, VoiceSpec};
use std::path::PathBuf;
use std::time::Instant;

use crate::commands::common::{LoadArgs, Loaded};

#[derive(Args)]
pub struct SynthArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Voice library directory (NAME.wav + NAME.txt [+ profile.yaml]).
    #[arg(long, env = "VOICE_PROMPTS_PATH")]
    voices: Option<PathBuf>,
    /// The transcript.
    #[arg(
        long,
        conflicts_with = "text_file",
        required_unless_present = "text_file"
    )]
    text: Option<String>,
    /// A file holding the transcript.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// Reference voice(s): NAME, comma list for several speakers, `profile:NAME` for a profile.
    #[arg(long)]
    voice: Option<String>,
    /// Scene description; `empty` for none (default: the reference's quiet-room scene).
    #[arg(long)]
    scene: Option<String>,
    /// Put the reference voices into the system message (audio-in) instead of user/assistant turns.
    #[arg(long)]
    ref_audio_in_system_message: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Repetition-aware sampling window (0 disables).
    #[arg(long, default_value_t = 7)]
    ras_win_len: usize,
    #[arg(long, default_value_t = 2)]
    ras_win_max_num_repeat: usize,
    /// Forward steps per chunk (text tokens + audio frames), as the reference counts them.
    #[arg(long, default_value_t = 2048)]
    max_new_tokens: usize,
    #[arg(long, value_parser = ["none", "speaker", "word"], default_value = "none")]
    chunk_method: String,
    #[arg(long, default_value_t = 200)]
    chunk_max_word_num: usize,
    #[arg(long, default_value_t = 1)]
    chunk_max_num_turns: usize,
    #[arg(long)]
    generation_chunk_buffer_size: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Start the answer with <|audio_out_bos|> (needed for random checkpoints, which never
    /// decide to speak by themselves).
    #[arg(long)]
    force_audio: bool,
    /// Output file; the format follows the extension (wav, flac, mp3, opus/ogg, pcm).
    #[arg(long, default_value = "generation.wav")]
    out: PathBuf,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let transcript = match (&a.text, &a.text_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading --text-file {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give the transcript with --text or --text-file"),
    };
    if transcript.trim().is_empty() {
        bail!("the transcript is empty");
    }
    let format = crate::commands::common::format_for_path(&a.out)?;
    let Loaded {
        model,
        codec,
        tokenizer,
        ..
    } = a.load.load()?;
    let library = match &a.voices {
        Some(d) => Some(VoiceLibrary::open(d)?),
        None => None,
    };
    let scene = match a.scene.as_deref() {
        None => Some(higgs_text::context::DEFAULT_SCENE_PROMPT.to_string()),
        Some("empty") | Some("") => None,
        Some(s) => Some(s.to_string()),
    };
    let method: ChunkMethod = a.chunk_method.parse()?;
    let req = SynthRequest {
        transcript,
        voices: a
            .voice
            .as_deref()
            .map(VoiceSpec::parse_list)
            .unwrap_or_default(),
        scene_prompt: scene,
        ref_audio_in_system_message: a.ref_audio_in_system_message,
        chunking: ChunkConfig {
            method,
            max_word_num: a.chunk_max_word_num.max(1),
            max_num_turns: a.chunk_max_num_turns,
        },
        chunk_buffer_size: a.generation_chunk_buffer_size,
        force_audio: a.force_audio,
        params: GenerationParams {
            sampling: SamplingParams {
                temperature: a.temperature,
                top_k: Some(a.top_k),
                top_p: a.top_p,
            },
            ras: RasParams {
                win_len: a.ras_win_len,
                max_repeat: a.ras_win_max_num_repeat,
            },
            max_new_tokens: a.max_new_tokens,
            seed: a.seed,
            ignore_eos: false,
        },
    };
    let synth = Synthesizer {
        model: &model,
        codec: &codec,
        tokenizer: &tokenizer,
        library: library.as_ref(),
    };
    let bar = indicatif::ProgressBar::new(a.max_new_tokens as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let out = synth.synthesize(&req, |p| {
        bar.set_message(format!("chunk {}/{}", p.chunk + 1, p.num_chunks));
        bar.set_position(p.steps as u64);
    })?;
    bar.finish_and_clear();
    let bytes = higgs_audio_io::encode(format, &out.audio, out.sample_rate as u32)?;
    std::fs::write(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let secs = out.audio.len() as f64 / out.sample_rate as f64;
    eprintln!(
        "wrote {} ({:.2} s of audio, {} frames, {} chunk(s)) in {:.2} s ({:.2}x real time)",
        a.out.display(),
        secs,
        out.codes.frames(),
        out.chunks,
        t0.elapsed().as_secs_f64(),
        secs / t0.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(())
}
