//! Decodes each file given on the command line and prints what the reader saw, or its error.
//! `cargo run -p higgs-audio-io --example probe -- a.wav b.mp3`

fn main() {
    let limits = higgs_audio_io::DecodeLimits::default();
    for arg in std::env::args().skip(1) {
        match higgs_audio_io::decode_file(std::path::Path::new(&arg), &limits) {
            Ok(d) => println!(
                "{arg}: {} / {}, {} Hz, {} ch → {} mono samples ({:.3} s)",
                d.container,
                d.codec,
                d.sample_rate,
                d.source_channels,
                d.samples.len(),
                d.duration_seconds()
            ),
            Err(e) => println!("{arg}: error [{}]: {e}", e.error_type()),
        }
    }
}
