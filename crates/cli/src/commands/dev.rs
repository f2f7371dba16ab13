//! `higgs-serve dev ...`: random checkpoints in the real layouts and model micro-benchmarks.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use higgs_engine::sampling::{sample_rows, SamplingParams};
use higgs_model::random::{Preset, RandomCheckpoint, WeightDtype};
use higgs_model::{
    CheckpointLayout, ForwardOptions, HiggsAudioModel, LogitsRequest, PositionKind, SeqInput,
};
use std::path::PathBuf;
use std::time::Instant;

use crate::device::{self, DeviceArg, DtypeArg};

#[derive(Subcommand)]
pub enum DevCommand {
    /// Write a complete random checkpoint in the real on-disk layouts: `OUT/model` (config.json,
    /// weights, tokenizer.json) and `OUT/codec` (audio tokenizer config + weights).
    MakeCheckpoint(MakeCheckpointArgs),
    /// Time decode steps of a model: B sequences with a given context, one forward per step.
    BenchStep(BenchStepArgs),
    /// Time the codec's streaming window decode: B windows of `context + new + context` frames,
    /// batched as the engine's audio worker batches them; `--profile` splits one decode by op.
    BenchCodec(BenchCodecArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PresetArg {
    Tiny,
    Full,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Legacy,
    Hf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum WeightDtypeArg {
    F32,
    Bf16,
}

#[derive(Args)]
pub struct MakeCheckpointArgs {
    #[arg(long, value_enum, default_value = "tiny")]
    preset: PresetArg,
    #[arg(long, value_enum, default_value = "legacy")]
    layout: LayoutArg,
    /// Output directory (receives `model/` and `codec/`).
    #[arg(long)]
    out: PathBuf,
    /// A real `tokenizer.json` to copy; default: a small generated one with the Higgs special tokens.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 20250803)]
    seed: u64,
    /// Weight dtype (default: f32 for tiny, bf16 for full, as the real checkpoint).
    #[arg(long, value_enum)]
    dtype: Option<WeightDtypeArg>,
    /// Maximum shard size in bytes (default: single file for tiny, 5 GB shards for full).
    #[arg(long)]
    shard_bytes: Option<u64>,
    /// Leave out the text head (`text_lm_head`), as transformers' `save_pretrained` does by
    /// default: the engine then generates audio only.
    #[arg(long)]
    no_text_head: bool,
}

#[derive(Args)]
pub struct BenchStepArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    #[arg(long, value_enum, default_value = "auto")]
    dtype: DtypeArg,
    /// Comma-separated batch sizes.
    #[arg(long, default_value = "1,8,32")]
    batch: String,
    /// Positions already in each sequence's cache when timing starts.
    #[arg(long, default_value_t = 256)]
    context: usize,
    /// Timed decode steps per batch size (after 3 warm-up steps; then up to 10 profiled steps:
    /// forward enqueue vs finished, and the batched top-k/top-p sampler on the step's logits).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BenchCodecArgs {
    /// Audio tokenizer directory.
    #[arg(long, env = "AUDIO_TOKENIZER_PATH")]
    codec: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Comma-separated batch sizes (windows decoded together).
    #[arg(long, default_value = "1,64,256")]
    batch: String,
    /// New frames per window (the engine's chunk: 4, 25, 50, then 100).
    #[arg(long, default_value_t = 25)]
    new_frames: usize,
    /// Context frames on each side (default: the decoder's receptive field, as the engine).
    #[arg(long)]
    context: Option<usize>,
    /// Timed decodes per batch size (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// One more decode per batch size with a device sync after every op, timed by op kind
    /// (the syncs cost time of their own: compare shares, not the total).
    #[arg(long)]
    profile: bool,
    /// Time layer-wise streaming steps instead (`Codec::decode_step`: each layer keeps its
    /// last inputs, no context frames are decoded): B streams in steady state, `--new-frames`
    /// per step. Not with `--profile`.
    #[arg(long, conflicts_with = "profile")]
    layer_streaming: bool,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: DevCommand) -> Result<()> {
    match cmd {
        DevCommand::MakeCheckpoint(a) => make_checkpoint(a),
        DevCommand::BenchStep(a) => bench_step(a),
        DevCommand::BenchCodec(a) => bench_codec(a),
    }
}

fn parse_batches(list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&b| b > 0)
                .with_context(|| {
                    format!("bad --batch entry {s:?}: use positive integers, e.g. 1,64,256")
                })
        })
        .collect()
}

fn bench_codec(a: BenchCodecArgs) -> Result<()> {
    use higgs_codec::{Codec, DecoderOp};
    use std::collections::BTreeMap;
    let dev = device::select(a.device, 0)?;
    let opts = crate::options::codec_options()?;
    let t0 = Instant::now();
    let codec = Codec::load_with(&a.codec, &dev, &opts)
        .with_context(|| format!("loading the audio tokenizer from {}", a.codec.display()))?;
    device::sync(&dev)?;
    eprintln!(
        "codec loaded in {:.2}s on {dev:?} ({opts:?})",
        t0.elapsed().as_secs_f64()
    );
    if a.new_frames == 0 || a.runs == 0 {
        bail!("--new-frames and --runs must be at least 1");
    }
    let ctx = if a.layer_streaming {
        0
    } else {
        a.context.unwrap_or(codec.decoder_receptive_field_frames())
    };
    let frames = ctx + a.new_frames + ctx;
    let (n_q, size) = (codec.num_codebooks(), codec.codebook_size() as u64);
    for b in parse_batches(&a.batch)? {
        // Deterministic codes spread over the codebooks (a multiplicative hash of the index).
        let codes: Vec<u32> = (0..(b * n_q * frames) as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) % size)
            .map(|c| c as u32)
            .collect();
        let codes =
            candle_core::Tensor::from_vec(codes, (b, n_q, frames), &candle_core::Device::Cpu)?;
        // Layer-wise steps run on from a warm state, far from the streams' start (no masks).
        let state = std::cell::RefCell::new(codec.initial_step_state(b)?);
        let step = std::cell::Cell::new(1000usize);
        let decode = || -> Result<()> {
            if a.layer_streaming {
                let first_frame = step.get() * a.new_frames;
                step.set(step.get() + 1);
                let span = higgs_codec::StepSpan {
                    first_frame,
                    total_frames: None,
                };
                codec.decode_step(&codes, &mut state.borrow_mut(), &vec![span; b])?;
            } else {
                codec.decode_window(&codes, ctx, a.new_frames)?;
            }
            device::sync(&dev)
        };
        decode()?;
        let mut times: Vec<f64> = (0..a.runs)
            .map(|_| {
                let t = Instant::now();
                decode().map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let audio_s = (b * a.new_frames) as f64 / codec.frame_rate() as f64;
        let mut ops: BTreeMap<DecoderOp, (f64, usize)> = BTreeMap::new();
        if a.profile {
            device::sync(&dev)?;
            let mut last = Instant::now();
            codec.decode_batch_marked(&codes, &mut |op| {
                dev.synchronize()?;
                let now = Instant::now();
                let e = ops.entry(op).or_default();
                e.0 += (now - last).as_secs_f64();
                e.1 += 1;
                last = now;
                Ok(())
            })?;
        }
        let total: f64 = ops.values().map(|v| v.0).sum();
        if a.json {
            let profile: serde_json::Map<String, serde_json::Value> = ops
                .iter()
                .map(|(op, (s, n))| {
                    (
                        op.name().to_string(),
                        serde_json::json!({"ms": s * 1e3, "calls": n}),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"batch": b, "new_frames": a.new_frames, "context_frames": ctx,
                    "layer_streaming": a.layer_streaming,
                    "window_frames": frames, "runs": a.runs, "decode_ms": median * 1e3,
                    "decode_ms_min": times[0] * 1e3, "audio_s_per_s": audio_s / median,
                    "device": format!("{dev:?}"), "options": format!("{opts:?}"),
                    "profile_ms": if a.profile { serde_json::Value::Object(profile) } else { serde_json::Value::Null },
                    "profile_total_ms": total * 1e3})
            );
        } else {
            println!(
                "batch {b:4}  window {frames} frames ({} new)  decode {:8.2} ms  {:8.1} audio-s/s",
                a.new_frames,
                median * 1e3,
                audio_s / median
            );
            for (op, (s, n)) in &ops {
                println!(
                    "    {:20} {:8.2} ms  {:5.1} %  ({n} calls)",
                    op.name(),
                    s * 1e3,
                    100.0 * s / total.max(f64::MIN_POSITIVE)
                );
            }
        }
    }
    Ok(())
}

fn make_checkpoint(a: MakeCheckpointArgs) -> Result<()> {
    let preset = match a.preset {
        PresetArg::Tiny => Preset::Tiny,
        PresetArg::Full => Preset::Full,
    };
    let layout = match a.layout {
        LayoutArg::Legacy => CheckpointLayout::Legacy,
        LayoutArg::Hf => CheckpointLayout::Hf,
    };
    let mut ck = RandomCheckpoint::new(preset, layout);
    ck.seed = a.seed;
    if let Some(d) = a.dtype {
        ck.dtype = match d {
            WeightDtypeArg::F32 => WeightDtype::F32,
            WeightDtypeArg::Bf16 => WeightDtype::Bf16,
        };
    }
    if a.shard_bytes.is_some() {
        ck.max_shard_bytes = a.shard_bytes;
    }
    ck.text_head = !a.no_text_head;
    if let Some(t) = &a.tokenizer {
        if !t.is_file() {
            bail!(
                "--tokenizer {}: no such file (pass a tokenizer.json)",
                t.display()
            );
        }
    }
    let model_dir = a.out.join("model");
    let t0 = Instant::now();
    let files = ck
        .write(&model_dir)
        .with_context(|| format!("writing random model to {}", model_dir.display()))?;
    higgs_model::random::write_tokenizer(&model_dir, a.tokenizer.as_deref())
        .with_context(|| format!("writing tokenizer to {}", model_dir.display()))?;
    let codec_dir = a.out.join("codec");
    let codec_preset = match preset {
        Preset::Tiny => higgs_codec::Preset::Tiny,
        Preset::Full => higgs_codec::Preset::Full,
    };
    let codec_layout = match layout {
        CheckpointLayout::Legacy => higgs_codec::CheckpointLayout::Legacy,
        CheckpointLayout::Hf => higgs_codec::CheckpointLayout::Hf,
    };
    higgs_codec::write_random_checkpoint(&codec_dir, codec_preset, codec_layout, a.seed)
        .with_context(|| format!("writing random audio tokenizer to {}", codec_dir.display()))?;
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "wrote random {} model ({:.1} MB in {} file(s)) to {} and codec to {} in {:.1}s — random weights: output is noise",
        layout,
        bytes as f64 / 1e6,
        files.len(),
        model_dir.display(),
        codec_dir.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench_step(a: BenchStepArgs) -> Result<()> {
    let dev = device::select(a.device, 0)?;
    let dtype = device::dtype(a.dtype, &dev);
    let t0 = Instant::now();
    let model = HiggsAudioModel::load_with(&a.model, dtype, &dev, &crate::options::model_options())
        .with_context(|| format!("loading model from {}", a.model.display()))?;
    device::sync(&dev)?;
    let load_s = t0.elapsed().as_secs_f64();
    let cfg = model.config().clone();
    let batches = parse_batches(&a.batch)?;
    eprintln!("model loaded in {load_s:.2}s on {dev:?} as {dtype:?}");
    for &b in &batches {
        let mut cache = model.new_cache(b, a.context + a.steps + a.steps.clamp(1, 10) + 8)?;
        // Prefill every slot with `context` audio columns (the state during speech generation).
        let col: Vec<u32> = (0..cfg.num_codebooks as u32)
            .map(|k| (17 * k + 3) % 1024)
            .collect();
        for slot in 0..b {
            let mut s = SeqInput::new(slot);
            for _ in 0..a.context {
                s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
            }
            model.forward(&[s], &mut cache, ForwardOptions::default())?;
        }
        let step = |cache: &mut higgs_model::KvCache| -> Result<()> {
            let batch: Vec<SeqInput> = (0..b)
                .map(|slot| {
                    let mut s = SeqInput::new(slot).with_logits(LogitsRequest::AUDIO);
                    s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
                    s
                })
                .collect();
            let out = model.forward(&batch, cache, ForwardOptions::default())?;
            // The one host copy per step a real engine makes: the sampled codes (here: argmax).
            if let Some(l) = out.audio_logits {
                let _codes: Vec<u32> =
                    l.argmax(candle_core::D::Minus1)?.flatten_all()?.to_vec1()?;
            }
            Ok(())
        };
        for _ in 0..3 {
            step(&mut cache)?;
        }
        device::sync(&dev)?;
        let t = Instant::now();
        for _ in 0..a.steps {
            step(&mut cache)?;
        }
        device::sync(&dev)?;
        let per_step = t.elapsed().as_secs_f64() / a.steps as f64;
        let frames_per_s = b as f64 / per_step;
        // Profile of one step: host time to enqueue the forward (kernels still running on a GPU)
        // vs the forward finished, and the engine's batched sampler on the step's logits.
        let (mut enqueue, mut forward, mut sample) = (0f64, 0f64, 0f64);
        let prof_steps = a.steps.clamp(1, 10);
        let params = vec![
            SamplingParams {
                temperature: 1.0,
                top_k: Some(50),
                top_p: 0.95,
            };
            b * cfg.num_codebooks
        ];
        let us: Vec<f32> = (0..params.len())
            .map(|i| (i as f32 * 0.618).fract())
            .collect();
        for _ in 0..prof_steps {
            let batch: Vec<SeqInput> = (0..b)
                .map(|slot| {
                    let mut s = SeqInput::new(slot).with_logits(LogitsRequest::AUDIO);
                    s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
                    s
                })
                .collect();
            device::sync(&dev)?;
            let t = Instant::now();
            let out = model.forward(&batch, &mut cache, ForwardOptions::default())?;
            enqueue += t.elapsed().as_secs_f64();
            device::sync(&dev)?;
            forward += t.elapsed().as_secs_f64();
            if let Some(l) = out.audio_logits {
                let t = Instant::now();
                let flat = l.reshape((b * cfg.num_codebooks, cfg.codebook_rows()))?;
                let _ids = sample_rows(&flat, &params, &us)?;
                sample += t.elapsed().as_secs_f64();
            }
        }
        let n = prof_steps as f64;
        let graphs = cache.graph_stats();
        let (enqueue_ms, forward_ms, sample_ms) =
            (enqueue / n * 1e3, forward / n * 1e3, sample / n * 1e3);
        if a.json {
            println!(
                "{}",
                serde_json::json!({"batch": b, "context": a.context, "steps": a.steps,
                    "step_ms": per_step * 1e3, "frames_per_s": frames_per_s,
                    "audio_s_per_s": frames_per_s / 25.0, "device": format!("{dev:?}"),
                    "dtype": format!("{dtype:?}"), "load_s": load_s,
                    "profile": {"forward_enqueue_ms": enqueue_ms, "forward_ms": forward_ms,
                        "sample_topk_topp_ms": sample_ms, "steps": prof_steps},
                    "cuda_graphs": {"captured": graphs.captured, "replayed": graphs.replayed,
                        "eager": graphs.eager}})
            );
        } else {
            println!(
                "batch {b:4}  context {:5}  step {:8.3} ms  {:9.1} frames/s  {:7.2} audio-s/s  (forward {:.3} ms, enqueue {:.3} ms, sampling {:.3} ms)",
                a.context,
                per_step * 1e3,
                frames_per_s,
                frames_per_s / 25.0,
                forward_ms,
                enqueue_ms,
                sample_ms
            );
        }
    }
    Ok(())
}
