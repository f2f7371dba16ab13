//! Times encode / decode / streaming decode of 10 s of audio on the CPU.
//!
//! `cargo run --release -p higgs-codec --example codec_bench [-- CODEC_DIR [SECONDS] [RUNS]]`
//! (default: the fixture codec under `$HIGGS_FIXTURES/codec`, 10 s, 5 runs). Reports the median
//! wall time per call and the real-time factor (audio seconds per wall second).
#![allow(clippy::unwrap_used)]

use candle_core::Device;
use higgs_codec::{Codec, StreamingDecoder};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    f(); // warm-up (allocations, thread pool)
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| higgs_testkit::fixtures_root().join("codec"));
    let seconds: f64 = args.get(2).map_or(10.0, |s| s.parse().unwrap());
    let runs: usize = args.get(3).map_or(5, |s| s.parse().unwrap());
    let t = Instant::now();
    let codec = Codec::load(&dir, &Device::Cpu).unwrap();
    println!("load {}: {:.2?}", dir.display(), t.elapsed());

    let sr = codec.sample_rate();
    let n = (seconds * sr as f64) as usize;
    // Chirp 100 Hz → 4 kHz plus a little deterministic noise, like the fixture signal.
    let wave: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / sr as f64;
            let f = 100.0 + (4000.0 - 100.0) * t / seconds / 2.0;
            let noise = ((i as u64).wrapping_mul(2654435761) % 1000) as f64 / 1000.0 - 0.5;
            (0.5 * (2.0 * std::f64::consts::PI * f * t).sin() + 0.02 * noise) as f32
        })
        .collect();

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("audio: {seconds} s at {sr} Hz ({n} samples); {runs} timed runs after 1 warm-up; {threads} CPU threads");
    let codes = codec.encode(&wave).unwrap();
    let enc = time(runs, || {
        codec.encode(&wave).unwrap();
    });
    let dec = time(runs, || {
        codec.decode(&codes).unwrap();
    });
    let frames = codes.dim(1).unwrap();
    let mut stream_times = Vec::new();
    for chunk in [1usize, 5, 25] {
        let d = time(runs.min(3), || {
            let mut s = StreamingDecoder::new(&codec);
            let mut start = 0;
            while start < frames {
                let k = chunk.min(frames - start);
                s.push(&codes.narrow(1, start, k).unwrap()).unwrap();
                start += k;
            }
            s.finish().unwrap();
        });
        stream_times.push((chunk, d));
    }
    let rtf = |d: Duration| seconds / d.as_secs_f64();
    println!("encode: {enc:.2?} median ({:.1}x real time)", rtf(enc));
    println!(
        "decode ({frames} frames): {dec:.2?} median ({:.1}x real time)",
        rtf(dec)
    );
    for (chunk, d) in stream_times {
        println!(
            "streaming decode, {chunk}-frame chunks, context {}+{}: {d:.2?} ({:.1}x real time)",
            codec.decoder_receptive_field_frames(),
            codec.decoder_receptive_field_frames(),
            rtf(d)
        );
    }
}
