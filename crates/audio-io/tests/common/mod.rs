//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `$HIGGS_VOICES`, else `<fixtures root>/../voices`.
pub fn voices_dir() -> PathBuf {
    match std::env::var_os("HIGGS_VOICES") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => higgs_testkit::fixtures_root().join("../voices"),
    }
}

/// What a RIFF/WAVE header says, parsed here independently of symphonia.
#[derive(Debug)]
pub struct WavHeader {
    pub channels: u16,
    pub rate: u32,
    pub bits: u16,
    pub frames: u64,
}

pub fn parse_wav_header(b: &[u8]) -> WavHeader {
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    let (mut pos, mut fmt, mut data) = (12usize, None, None);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let ch = u16::from_le_bytes([b[body + 2], b[body + 3]]);
            let rate = u32::from_le_bytes(b[body + 4..body + 8].try_into().unwrap());
            let bits = u16::from_le_bytes([b[body + 14], b[body + 15]]);
            fmt = Some((ch, rate, bits));
        } else if id == b"data" {
            data = Some(len.min(b.len() - body));
        }
        pos = body + len + (len & 1);
    }
    let (channels, rate, bits) = fmt.unwrap();
    let frames = (data.unwrap() / (channels as usize * bits as usize / 8)) as u64;
    WavHeader {
        channels,
        rate,
        bits,
        frames,
    }
}

/// A deterministic speech-like test signal: two harmonics with vibrato plus a little noise,
/// peaking well inside [-1, 1].
pub fn test_signal(n: usize, rate: u32) -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let f0 = 180.0 + 20.0 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let phase = 2.0 * std::f64::consts::PI * f0 * t;
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f64 / u32::MAX as f64 - 0.5) * 0.02;
            (0.5 * phase.sin() + 0.2 * (3.0 * phase).sin() + noise) as f32
        })
        .collect()
}

/// The 16-bit value the spec asks for: `(np.clip(x, -1, 1) * 32767).astype(np.int16)`, i.e.
/// clip, scale, truncate toward zero. Written out here rather than calling the crate's helper.
pub fn to_i16(x: f32) -> i16 {
    let v = x.clamp(-1.0, 1.0) * 32767.0;
    v.trunc() as i16
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run scripts/install-test-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Max abs difference and Pearson correlation of two equally long signals.
pub fn compare(a: &[f32], b: &[f32]) -> (f32, f64) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&x| x as f64).sum::<f64>() / n,
        b.iter().map(|&x| x as f64).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    (max, sab / (saa.sqrt() * sbb.sqrt()))
}
