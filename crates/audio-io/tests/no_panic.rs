//! Property tests: no input makes the reader panic. Random bytes, truncated valid files and
//! files with mutated headers must all come back as `Ok` or a clean `AudioError`.
#![allow(clippy::unwrap_used)]

mod common;

use higgs_audio_io::{decode_bytes, DecodeLimits};
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::OnceLock;

/// Short valid files in every input format, made by ffmpeg (an independent encoder) from a voice.
fn seeds() -> &'static Vec<(String, Vec<u8>)> {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("audio-io-seeds");
        std::fs::create_dir_all(&dir).unwrap();
        let src = common::voices_dir().join("broom_salesman.wav"); // stereo 44.1 kHz
        let outs: [(&str, &[&str]); 10] = [
            ("wav", &[]),
            ("flac", &[]),
            ("mp3", &["-c:a", "libmp3lame", "-b:a", "64k"]),
            ("ogg", &["-c:a", "libvorbis"]),
            ("m4a", &["-c:a", "aac"]),
            ("aiff", &[]),
            ("caf", &[]),
            ("mka", &["-c:a", "flac"]),
            ("opus", &["-c:a", "libopus"]),
            ("webm", &["-c:a", "libopus"]),
        ];
        outs.iter()
            // Opus input needs the `opus` feature (libopus).
            .filter(|(ext, _)| cfg!(feature = "opus") || !matches!(*ext, "opus" | "webm"))
            .map(|(ext, args)| {
                let out = dir.join(format!("seed.{ext}"));
                common::run(
                    Command::new("ffmpeg")
                        .args(["-v", "error", "-y", "-t", "0.25", "-i"])
                        .arg(&src)
                        .args(*args)
                        .arg(&out),
                );
                let bytes = std::fs::read(&out).unwrap();
                // Each seed must itself decode, or mutating it tests nothing.
                decode_bytes(&bytes, &DecodeLimits::default())
                    .unwrap_or_else(|e| panic!("seed {ext} does not decode: {e}"));
                (ext.to_string(), bytes)
            })
            .collect()
    })
}

/// Decodes inside catch_unwind and fails the property on a panic; any error is fine, and its
/// message must not be empty.
fn no_panic(bytes: &[u8]) -> Result<(), TestCaseError> {
    let limits = DecodeLimits {
        max_duration_secs: 30.0,
        ..Default::default()
    };
    match catch_unwind(AssertUnwindSafe(|| decode_bytes(bytes, &limits))) {
        Ok(Ok(d)) => {
            prop_assert!(d.sample_rate > 0);
            prop_assert!(d.samples.iter().all(|s| s.is_finite()));
        }
        Ok(Err(e)) => prop_assert!(!e.to_string().is_empty()),
        Err(_) => prop_assert!(false, "decoder panicked on {} bytes", bytes.len()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        no_panic(&bytes)?;
    }

    #[test]
    fn random_bytes_behind_a_real_magic_never_panic(
        magic in 0usize..10,
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let (_, seed) = &seeds()[magic % seeds().len()];
        let mut bytes = seed[..seed.len().min(12)].to_vec();
        bytes.extend_from_slice(&tail);
        no_panic(&bytes)?;
    }

    #[test]
    fn truncated_files_never_panic(which in 0usize..10, frac in 0.0f64..1.0) {
        let (_, seed) = &seeds()[which % seeds().len()];
        let cut = (seed.len() as f64 * frac) as usize;
        no_panic(&seed[..cut])?;
    }

    #[test]
    fn mutated_headers_never_panic(
        which in 0usize..10,
        edits in proptest::collection::vec((0usize..256, any::<u8>()), 1..8),
    ) {
        let (_, seed) = &seeds()[which % seeds().len()];
        let mut bytes = seed.clone();
        for (at, v) in edits {
            let at = at % bytes.len();
            bytes[at] = v;
        }
        no_panic(&bytes)?;
    }

    #[test]
    fn mutated_bodies_never_panic(
        which in 0usize..10,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..32),
    ) {
        let (_, seed) = &seeds()[which % seeds().len()];
        let mut bytes = seed.clone();
        for (at, v) in edits {
            let at = at % bytes.len();
            bytes[at] = v;
        }
        no_panic(&bytes)?;
    }
}
