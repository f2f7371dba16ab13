//! The voice library on the real reference recordings (mixed rates, one stereo) with the fixture
//! codec: every voice encodes to valid codes of the length the reference computes, decodes to the
//! right duration, and the reference-code cache is used and invalidated when the audio changes.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::{Device, Tensor};
use higgs_codec::Codec;
use higgs_engine::voices::{VoiceError, VoiceLibrary};
use std::path::PathBuf;

fn voices_dir() -> PathBuf {
    match std::env::var_os("HIGGS_VOICES") {
        Some(p) => PathBuf::from(p),
        None => higgs_testkit::fixtures_root().join("../voices"),
    }
}

fn codec() -> Codec {
    Codec::load(&higgs_testkit::fixture("codec"), &Device::Cpu).unwrap()
}

/// A writable copy of the shared voices (the shared folder is read-only).
fn copy_voices() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(voices_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    tmp
}

#[test]
fn every_voice_encodes_and_decodes_with_the_tiny_codec() {
    let codec = codec();
    let dir = copy_voices();
    let lib = VoiceLibrary::open(dir.path()).unwrap();
    let names = lib.names();
    assert!(names.len() >= 2, "voices found: {names:?}");
    let hop = codec.hop_length();
    for name in names {
        let samples = higgs_audio_io::load_file(
            &lib.list()
                .into_iter()
                .find(|v| v.name == name)
                .unwrap()
                .audio_file,
            24000,
            &Default::default(),
        )
        .unwrap();
        let codes = lib.reference_codes(&name, &codec).unwrap();
        // Frame count as the reference computes it (conv arithmetic of both branches and the
        // padded re-encode of _xcodec_encode): ceil(duration * 25) up to the last partial frame.
        assert_eq!(
            Some(codes.frames()),
            codec.encoded_frames(samples.len()),
            "{name}: frames"
        );
        assert!(
            samples.len().div_ceil(hop) - codes.frames() <= 1,
            "{name}: ~ceil(duration*25)"
        );
        assert_eq!(codes.num_codebooks, codec.num_codebooks());
        assert!(
            codes
                .data
                .iter()
                .all(|&c| (c as usize) < codec.codebook_size()),
            "{name}: code range"
        );
        let t = Tensor::from_vec(
            codes.data.clone(),
            (codes.num_codebooks, codes.frames()),
            &Device::Cpu,
        )
        .unwrap();
        let wav = codec.decode(&t).unwrap();
        assert_eq!(wav.len(), codes.frames() * hop, "{name}: decoded length");
        assert!(wav.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn reference_codes_are_cached_and_invalidated_when_the_audio_changes() {
    let codec = codec();
    let dir = copy_voices();
    let names = VoiceLibrary::open(dir.path()).unwrap().names();
    let (a, b) = (&names[0], &names[1]);
    let first = VoiceLibrary::open(dir.path())
        .unwrap()
        .reference_codes(a, &codec)
        .unwrap();
    let cache = dir.path().join(format!("{a}.codes"));
    assert!(cache.exists() && dir.path().join(format!("{a}.codes.json")).exists());
    // A new library instance (new process) reads the cache: tamper with it to prove it is used.
    let mut f = higgs_codec::read_codes(&cache).unwrap();
    f.codes[0] = (f.codes[0] + 1) % 1024;
    higgs_codec::write_codes(&cache, &f).unwrap();
    let cached = VoiceLibrary::open(dir.path())
        .unwrap()
        .reference_codes(a, &codec)
        .unwrap();
    assert_ne!(cached, first, "the cache file was not used");
    assert_eq!(cached.data[0], u32::from(f.codes[0]));
    // Replacing the recording invalidates the cache: the codes become those of the new audio.
    let ext = |n: &str| {
        ["wav", "flac", "mp3", "ogg"]
            .into_iter()
            .find(|e| dir.path().join(format!("{n}.{e}")).exists())
            .unwrap()
    };
    std::fs::copy(
        dir.path().join(format!("{b}.{}", ext(b))),
        dir.path().join(format!("{a}.{}", ext(a))),
    )
    .unwrap();
    let lib = VoiceLibrary::open(dir.path()).unwrap();
    let replaced = lib.reference_codes(a, &codec).unwrap();
    let of_b = lib.reference_codes(b, &codec).unwrap();
    assert_eq!(replaced, of_b);
}

#[test]
fn add_and_delete_voices() {
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let lib = VoiceLibrary::open(dir.path()).unwrap();
    let src = std::fs::read(voices_dir().join("belinda.wav")).unwrap();
    lib.add("new_voice", &src, "  Some words.  ", 24000)
        .unwrap();
    assert_eq!(lib.names(), vec!["new_voice".to_string()]);
    assert_eq!(lib.transcript("new_voice").unwrap(), "Some words.");
    assert!(matches!(
        lib.add("new_voice", &src, "x", 24000),
        Err(VoiceError::Exists { .. })
    ));
    assert!(matches!(
        lib.add("../evil", &src, "x", 24000),
        Err(VoiceError::InvalidName { .. })
    ));
    assert!(matches!(
        lib.add("bad_audio", b"not audio at all", "x", 24000),
        Err(VoiceError::Audio { .. })
    ));
    assert!(matches!(
        lib.add("no_words", &src, "   ", 24000),
        Err(VoiceError::EmptyTranscript { .. })
    ));
    lib.reference_codes("new_voice", &codec).unwrap();
    lib.delete("new_voice").unwrap();
    assert!(lib.names().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "delete removes audio, transcript and cache"
    );
    assert!(matches!(
        lib.delete("new_voice"),
        Err(VoiceError::Unknown { .. })
    ));
}
