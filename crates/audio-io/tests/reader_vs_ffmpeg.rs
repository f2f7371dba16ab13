//! Our reader against ffmpeg's decoders, format by format: same rate, same length, and the same
//! samples (exactly for lossless codecs, closely for lossy ones, whose decoders may round differently).
#![allow(clippy::unwrap_used)]

mod common;

use common::{compare, run};
use higgs_audio_io::{decode_file, DecodeLimits};
use std::path::PathBuf;
use std::process::Command;

/// ffmpeg's decode as interleaved f32, averaged to mono here (librosa's downmix).
fn ffmpeg_mono(path: &PathBuf, channels: usize) -> Vec<f32> {
    let bytes = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-"]));
    let inter: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    inter
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect()
}

#[test]
fn every_input_format_decodes_like_ffmpeg() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audio-io-reader");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::voices_dir().join("broom_salesman.wav"); // stereo, 44.1 kHz, 16-bit
                                                               // (file name, ffmpeg codec args, lossless?)
    let cases: [(&str, &[&str], bool); 10] = [
        ("s16.wav", &[], true),
        ("s24.wav", &["-c:a", "pcm_s24le"], true),
        ("f32.wav", &["-c:a", "pcm_f32le"], true),
        ("u8.wav", &["-c:a", "pcm_u8"], true),
        ("x.flac", &[], true),
        ("x.aiff", &[], true),
        ("x.caf", &[], true),
        ("x.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"], false),
        ("x.ogg", &["-c:a", "libvorbis"], false),
        ("x.mka", &["-c:a", "flac"], true),
    ];
    for (name, args, lossless) in cases {
        let path = dir.join(name);
        run(Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-t", "3", "-i"])
            .arg(&src)
            .args(args)
            .arg(&path));
        let ours =
            decode_file(&path, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (ours.sample_rate, ours.source_channels),
            (44100, 2),
            "{name}"
        );
        let theirs = ffmpeg_mono(&path, 2);
        assert_eq!(ours.samples.len(), theirs.len(), "{name}: length");
        let (max, corr) = compare(&ours.samples, &theirs);
        eprintln!(
            "{name}: {} samples, max abs diff {max:.2e}, corr {corr:.6}",
            theirs.len()
        );
        if lossless {
            // Both divide integers by 2^(bits-1) and the average is (L + R) / 2 in f32 on both sides.
            assert_eq!(max, 0.0, "{name}: max abs diff");
        } else {
            // Different decoder implementations of the same bitstream: float rounding only
            // (measured 7e-7 for mp3, 1.2e-7 for vorbis).
            assert!(
                max < 1e-5 && corr > 0.99999,
                "{name}: max {max}, corr {corr}"
            );
        }
    }
}

#[cfg(feature = "opus")]
#[test]
fn opus_input_in_ogg_and_webm_decodes_like_ffmpeg() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audio-io-reader");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::voices_dir().join("broom_salesman.wav");
    for name in ["x.opus", "x.webm"] {
        let path = dir.join(name);
        run(Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-t", "3", "-i"])
            .arg(&src)
            .args(["-c:a", "libopus", "-b:a", "64k"])
            .arg(&path));
        let ours =
            decode_file(&path, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Opus decodes at its native 48 kHz, like opusfile/libsndfile.
        assert_eq!(
            (ours.sample_rate, ours.source_channels),
            (48000, 2),
            "{name}"
        );
        let theirs = ffmpeg_mono(&path, 2);
        // Ogg marks the end padding; WebM's DiscardPadding element is not read by symphonia, so
        // up to one 20 ms frame of padding may remain at the end.
        let extra = ours.samples.len() - theirs.len();
        if name.ends_with(".opus") {
            assert_eq!(extra, 0, "{name}");
        } else {
            assert!(extra < 960, "{name}: {extra} extra samples");
        }
        let n = theirs.len();
        let (max, corr) = compare(&ours.samples[..n], &theirs);
        eprintln!("{name}: {n} samples (+{extra}), max abs diff {max:.2e}, corr {corr:.6}");
        // Same libopus decoder (ffmpeg may use its native one): pre-skip must line up exactly.
        assert!(corr > 0.999, "{name}: corr {corr}, max {max}");
    }
    // Our own ogg/opus output reads back at the input length.
    let x = common::test_signal(24_000, 24_000);
    let bytes = higgs_audio_io::encode(higgs_audio_io::AudioFormat::Opus, &x, 24_000).unwrap();
    let back = higgs_audio_io::decode_bytes(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(back.sample_rate, 48000);
    assert_eq!(back.samples.len(), 48_000);
    let y = back.resampled(24_000).unwrap();
    // 32 kbit/s opus, then 48 → 24 kHz: measured 0.987.
    let (_, corr) = compare(&x[500..23_500], &y[500..23_500]);
    assert!(corr > 0.98, "corr {corr}");
}
