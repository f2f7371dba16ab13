//! Flags and loading shared by the commands that run the model.

use anyhow::{bail, Context, Result};
use clap::Args;
use higgs_audio_io::AudioFormat;
use std::path::{Path, PathBuf};

use crate::device::{self, DeviceArg, DtypeArg};

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long, env = "MODEL_PATH")]
    pub model: PathBuf,
    /// Audio tokenizer directory (config.json + model.pth or model.safetensors).
    #[arg(long, env = "AUDIO_TOKENIZER_PATH")]
    pub codec: PathBuf,
    /// Directory or file of the text tokenizer (default: the model directory).
    #[arg(long, env = "TOKENIZER_PATH")]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DtypeArg,
}

pub struct Loaded {
    pub model: higgs_model::HiggsAudioModel,
    pub codec: higgs_codec::Codec,
    pub tokenizer: higgs_text::TextTokenizer,
}

impl LoadArgs {
    pub fn load(&self) -> Result<Loaded> {
        self.load_on(device::select(self.device, 0)?)
    }

    /// [`Self::load`] onto `device` (one engine of several).
    pub fn load_on(&self, device: candle_core::Device) -> Result<Loaded> {
        let dtype = device::dtype(self.dtype, &device);
        device::configure_numerics(&device, dtype);
        let tok_path = self.tokenizer.clone().unwrap_or_else(|| self.model.clone());
        let tokenizer = if tok_path.is_dir() {
            higgs_text::TextTokenizer::from_model_dir(&tok_path)
        } else {
            higgs_text::TextTokenizer::from_file(&tok_path)
        }
        .with_context(|| format!("loading the text tokenizer from {}", tok_path.display()))?;
        let model = higgs_model::HiggsAudioModel::load_with(
            &self.model,
            dtype,
            &device,
            &crate::options::model_options(),
        )
        .with_context(|| format!("loading the model from {}", self.model.display()))?;
        let codec_device = device::codec_device(&device)?;
        let codec = higgs_codec::Codec::load_with(
            &self.codec,
            &codec_device,
            &crate::options::codec_options()?,
        )
        .with_context(|| format!("loading the audio tokenizer from {}", self.codec.display()))?;
        Ok(Loaded {
            model,
            codec,
            tokenizer,
        })
    }
}

/// The output format named by a file's extension.
pub fn format_for_path(p: &Path) -> Result<AudioFormat> {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .with_context(|| {
            format!(
                "{}: give the output file an extension (wav, flac, mp3, opus, pcm)",
                p.display()
            )
        })?;
    let f: AudioFormat = match ext.as_str() {
        "ogg" => AudioFormat::Opus,
        e => e
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
    };
    if !f.is_supported() {
        bail!("{}: output format {f} is not supported", p.display());
    }
    Ok(f)
}

/// How generated audio is cut into streamed chunks (engine commands).
#[derive(Args, Clone, Debug)]
pub struct StreamArgs {
    /// Frames (40 ms each) of the first streamed audio chunk: lower = earlier first audio.
    #[arg(long, env = "HIGGS_FIRST_CHUNK_FRAMES", default_value_t = 4)]
    pub first_chunk_frames: usize,
    /// Frames of the second chunk; each later chunk doubles up to --max-chunk-frames.
    #[arg(long, env = "HIGGS_CHUNK_FRAMES", default_value_t = 25)]
    pub chunk_frames: usize,
    /// Largest chunk (= --chunk-frames for fixed-size chunks). Bigger chunks spend less codec time
    /// re-decoding the context frames around each chunk.
    #[arg(long, env = "HIGGS_MAX_CHUNK_FRAMES", default_value_t = 100)]
    pub max_chunk_frames: usize,
    /// How chunks are decoded: `windows` (each chunk with the decoder's receptive field of
    /// context frames each side, decoded again for every chunk) or `layers` (every decoder layer
    /// keeps its last inputs per stream: no context frame decoded twice; same audio).
    #[arg(
        long,
        env = "HIGGS_CODEC_STREAMING",
        value_enum,
        default_value = "windows"
    )]
    pub codec_streaming: CodecStreamingArg,
    /// Decode audio on a thread of its own (`1`) or on the engine thread between steps (`0`);
    /// unset: a thread when the codec has a GPU stream of its own.
    #[arg(long, env = "HIGGS_CODEC_THREAD", value_parser = parse_switch)]
    pub codec_thread: Option<bool>,
    /// Wait for the device after each forward so the phase timers attribute GPU time to the
    /// forward (profiling; costs a little throughput).
    #[arg(long, env = "HIGGS_PROFILE_SYNC", value_parser = parse_switch, default_value = "0")]
    pub profile_sync: bool,
    /// How audio rows are sampled on a GPU: `ops` (a chain of candle ops) or `fused` (one
    /// kernel launch; measured by the GPU suite before it becomes the default).
    #[arg(long, env = "HIGGS_DEVICE_SAMPLER", value_enum, default_value = "ops")]
    pub device_sampler: DeviceSamplerArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecStreamingArg {
    Windows,
    Layers,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DeviceSamplerArg {
    Ops,
    Fused,
}

/// `1`/`on`/`true` or `0`/`off`/`false` (environment-variable friendly booleans).
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected 1/on/true or 0/off/false, got {s:?}")),
    }
}

impl StreamArgs {
    pub fn apply(&self, cfg: &mut higgs_engine::EngineConfig) -> Result<()> {
        if self.first_chunk_frames == 0 || self.chunk_frames == 0 {
            bail!("--first-chunk-frames and --chunk-frames must be at least 1");
        }
        if self.max_chunk_frames < self.chunk_frames {
            bail!(
                "--max-chunk-frames ({}) must be at least --chunk-frames ({})",
                self.max_chunk_frames,
                self.chunk_frames
            );
        }
        cfg.first_chunk_frames = self.first_chunk_frames;
        cfg.chunk_frames = self.chunk_frames;
        cfg.max_chunk_frames = self.max_chunk_frames;
        cfg.codec_thread = self.codec_thread;
        cfg.layer_streaming = self.codec_streaming == CodecStreamingArg::Layers;
        cfg.profile_sync = self.profile_sync;
        cfg.device_sampler = match self.device_sampler {
            DeviceSamplerArg::Ops => higgs_engine::sampling::DeviceSampler::Ops,
            DeviceSamplerArg::Fused => higgs_engine::sampling::DeviceSampler::Fused,
        };
        Ok(())
    }
}
