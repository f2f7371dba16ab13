//! `higgs-serve synth`: text in, speech out, the way the reference CLI (`examples/generation.py`)
//! does it (voices, text pipeline, chunk loop), with a progress bar. It submits one request to a
//! one-slot engine — the same request driver as the HTTP and RunPod doors.

use anyhow::{bail, Context, Result};
use clap::Args;
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{
    start, EngineConfig, EngineParts, Event, GenerateRequest, GenerationParams, Prompting,
    RasParams, SamplingParams,
};
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
    /// KV positions of the engine's one slot: a chunk's prompt + --max-new-tokens must fit.
    #[arg(long, default_value_t = 8192)]
    max_seq_len: usize,
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
        Some(d) => Some(std::sync::Arc::new(VoiceLibrary::open(d)?)),
        None => None,
    };
    let scene = match a.scene.as_deref() {
        None => Some(higgs_text::context::DEFAULT_SCENE_PROMPT.to_string()),
        Some("empty") | Some("") => None,
        Some(s) => Some(s.to_string()),
    };
    let method: ChunkMethod = a.chunk_method.parse()?;
    let voices: Vec<VoiceSpec> = a
        .voice
        .as_deref()
        .map(VoiceSpec::parse_list)
        .unwrap_or_default();
    if library.is_none() && voices.iter().any(|v| matches!(v, VoiceSpec::Reference(_))) {
        bail!("voices were requested but no voice directory is configured (--voices DIR)");
    }
    let req = GenerateRequest {
        prompting: Prompting::Script {
            transcript,
            voices,
            uploads: Vec::new(),
            scene_prompt: scene,
            ref_audio_in_system_message: a.ref_audio_in_system_message,
            chunking: ChunkConfig {
                method,
                max_word_num: a.chunk_max_word_num.max(1),
                max_num_turns: a.chunk_max_num_turns,
            },
            chunk_buffer_size: a.generation_chunk_buffer_size,
        },
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
        force_audio: a.force_audio,
        timeout: None,
        request_id: None,
    };
    let sample_rate = codec.sample_rate();
    let cfg = EngineConfig {
        max_running: 1,
        max_seq_len: a.max_seq_len.max(1),
        max_queue: 1,
        ..Default::default()
    };
    let (engine, join) = start(
        cfg,
        EngineParts {
            model,
            codec,
            tokenizer,
            voices: library,
        },
    )?;
    let mut stream = engine.submit(req)?;
    // Progress: the chunk being generated (the engine announces each, also when it split a text
    // too long for one sequence) and the audio decoded so far (40 ms frames). A bar on a
    // terminal; elsewhere (logs, CI) a plain line per chunk and every few seconds.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if tty {
        indicatif::ProgressBar::new(1)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} chunk {pos}/{len} {wide_bar} {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut last_line = Instant::now();
    let t0 = Instant::now();
    let mut audio: Vec<f32> = Vec::new();
    let mut frames = 0usize;
    let mut chunks = 0usize;
    let mut chunk = (0usize, 1usize);
    while let Some(ev) = stream.next_blocking() {
        match ev {
            Event::Chunk { index, chunks: n } => {
                chunk = (index, n);
                bar.set_length(n as u64);
                bar.set_position(index as u64 + 1);
                if !tty && n > 1 {
                    eprintln!(
                        "synth: chunk {}/{n}, {frames} frames so far, {:.1} s",
                        index + 1,
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
            Event::Audio {
                samples, frames: n, ..
            } => {
                audio.extend_from_slice(&samples);
                frames += n;
                let msg = format!("{frames} frames ({:.1} s of audio)", frames as f64 * 0.04);
                if !tty && last_line.elapsed() >= std::time::Duration::from_secs(5) {
                    last_line = Instant::now();
                    eprintln!(
                        "synth: chunk {}/{}, {msg}, {:.1} s",
                        chunk.0 + 1,
                        chunk.1,
                        t0.elapsed().as_secs_f64()
                    );
                }
                bar.set_message(msg);
            }
            Event::Finished { usage, .. } => {
                chunks = usage.chunks;
                if let Some(w) = usage.auto_chunk_words {
                    eprintln!(
                        "synth: the text did not fit --max-seq-len in one piece: split into {chunks} chunks of up to {w} words"
                    );
                }
                break;
            }
            Event::Failed(e) => {
                bar.finish_and_clear();
                bail!("synthesis failed: {e}");
            }
            Event::Started { .. } | Event::Text { .. } => {}
        }
    }
    bar.finish_and_clear();
    engine.shutdown();
    drop(stream);
    drop(engine);
    if join.join().is_err() {
        bail!("the engine thread panicked");
    }
    if chunks == 0 {
        bail!("the engine stopped before the synthesis finished (see the log above)");
    }
    let bytes = higgs_audio_io::encode(format, &audio, sample_rate as u32)?;
    std::fs::write(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let secs = audio.len() as f64 / sample_rate as f64;
    eprintln!(
        "wrote {} ({:.2} s of audio, {} frames, {} chunk(s)) in {:.2} s ({:.2}x real time)",
        a.out.display(),
        secs,
        frames,
        chunks,
        t0.elapsed().as_secs_f64(),
        secs / t0.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(())
}
