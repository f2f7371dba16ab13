//! Writes a random tokenizer checkpoint (the library side of `higgs-serve dev make-checkpoint`).
//!
//! `cargo run -p higgs-codec --example make_random_checkpoint -- OUT_DIR [tiny|full] [legacy|hf] [SEED]`
#![allow(clippy::unwrap_used)]

use higgs_codec::{write_random_checkpoint, CheckpointLayout, Preset};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .get(1)
        .expect("usage: OUT_DIR [tiny|full] [legacy|hf] [SEED]");
    let preset = match args.get(2).map_or("tiny", String::as_str) {
        "full" => Preset::Full,
        _ => Preset::Tiny,
    };
    let layout = match args.get(3).map_or("legacy", String::as_str) {
        "hf" => CheckpointLayout::Hf,
        _ => CheckpointLayout::Legacy,
    };
    let seed = args.get(4).map_or(0, |s| s.parse().unwrap());
    write_random_checkpoint(std::path::Path::new(out), preset, layout, seed).unwrap();
    println!("wrote {preset:?} {layout:?} checkpoint to {out}");
}
