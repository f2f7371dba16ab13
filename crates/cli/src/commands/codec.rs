//! `higgs-serve codec encode|decode`: audio <-> codes files (format: docs/codec.md).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use higgs_codec::{Codec, CodesFile};
use std::path::PathBuf;

use crate::device::{self, DeviceArg};

#[derive(Subcommand)]
pub enum CodecCommand {
    /// Encode an audio file (wav/flac/mp3/ogg, any rate, mono or stereo) into a codes file.
    Encode(EncodeArgs),
    /// Decode a codes file into audio (format from the output extension).
    Decode(DecodeArgs),
}

#[derive(Args)]
pub struct EncodeArgs {
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Audio tokenizer directory.
    #[arg(long, env = "AUDIO_TOKENIZER_PATH")]
    codec: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

#[derive(Args)]
pub struct DecodeArgs {
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, env = "AUDIO_TOKENIZER_PATH")]
    codec: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

fn load(dir: &std::path::Path, d: DeviceArg) -> Result<Codec> {
    let dev = device::select(d, 0)?;
    Codec::load_with(dir, &dev, &crate::options::codec_options()?)
        .with_context(|| format!("loading the audio tokenizer from {}", dir.display()))
}

pub fn run(cmd: CodecCommand) -> Result<()> {
    match cmd {
        CodecCommand::Encode(a) => {
            let codec = load(&a.codec, a.device)?;
            let samples = higgs_audio_io::load_file(
                &a.input,
                codec.sample_rate() as u32,
                &Default::default(),
            )
            .with_context(|| format!("reading {}", a.input.display()))?;
            let codes = codec.encode(&samples)?;
            let f = CodesFile::from_tensor(
                &codes,
                codec.sample_rate() as u32,
                codec.hop_length() as u32,
                codec.codebook_size() as u32,
            )?;
            higgs_codec::write_codes(&a.out, &f)?;
            eprintln!(
                "wrote {} ({} codebooks x {} frames)",
                a.out.display(),
                f.n_codebooks,
                f.n_frames
            );
        }
        CodecCommand::Decode(a) => {
            let format = crate::commands::common::format_for_path(&a.out)?;
            let codec = load(&a.codec, a.device)?;
            let f = higgs_codec::read_codes(&a.input)
                .with_context(|| format!("reading {}", a.input.display()))?;
            let wav = codec.decode(&f.to_tensor(codec.device())?)?;
            std::fs::write(
                &a.out,
                higgs_audio_io::encode(format, &wav, codec.sample_rate() as u32)?,
            )
            .with_context(|| format!("writing {}", a.out.display()))?;
            eprintln!(
                "wrote {} ({:.2} s)",
                a.out.display(),
                wav.len() as f64 / codec.sample_rate() as f64
            );
        }
    }
    Ok(())
}
