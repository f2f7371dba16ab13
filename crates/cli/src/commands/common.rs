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
        let device = device::select(self.device, 0)?;
        let dtype = device::dtype(self.dtype, &device);
        let tok_path = self.tokenizer.clone().unwrap_or_else(|| self.model.clone());
        let tokenizer = if tok_path.is_dir() {
            higgs_text::TextTokenizer::from_model_dir(&tok_path)
        } else {
            higgs_text::TextTokenizer::from_file(&tok_path)
        }
        .with_context(|| format!("loading the text tokenizer from {}", tok_path.display()))?;
        let model = higgs_model::HiggsAudioModel::load(&self.model, dtype, &device)
            .with_context(|| format!("loading the model from {}", self.model.display()))?;
        let codec = higgs_codec::Codec::load(&self.codec, &device).with_context(|| {
            format!("loading the audio tokenizer from {}", self.codec.display())
        })?;
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
