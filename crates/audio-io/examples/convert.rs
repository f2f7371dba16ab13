//! Converts an audio file to one of the output formats at 24 kHz mono, one-shot or streamed.
//! `cargo run -p higgs-audio-io --example convert -- in.wav out.flac [--stream]`

use higgs_audio_io::{decode_file, encode, AudioFormat, DecodeLimits, StreamEncoder};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: convert IN OUT [--stream]".into());
    };
    let format: AudioFormat = Path::new(output)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .parse()?;
    let samples = decode_file(Path::new(input), &DecodeLimits::default())?.resampled(24000)?;
    let bytes = if rest.iter().any(|a| a == "--stream") {
        let mut enc = StreamEncoder::new(format, 24000)?;
        let mut out = Vec::new();
        for chunk in samples.chunks(960) {
            out.extend(enc.push(chunk)?);
        }
        out.extend(enc.finish()?);
        out
    } else {
        encode(format, &samples, 24000)?
    };
    std::fs::write(output, bytes)?;
    Ok(())
}
