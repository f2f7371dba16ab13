//! Error paths of the reader: each bad input gives its own clear error, never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use higgs_audio_io::{decode_bytes, decode_file, AudioError, DecodeLimits};

/// A canonical 44-byte-header PCM WAV with the given header fields and 16-bit samples.
fn wav(channels: u16, rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    let block = channels.max(1) as u32 * 2;
    b.extend_from_slice(&(rate * block).to_le_bytes());
    b.extend_from_slice(&(block as u16).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

fn err(bytes: &[u8]) -> AudioError {
    decode_bytes(bytes, &DecodeLimits::default()).unwrap_err()
}

#[test]
fn handmade_wav_decodes_exactly() {
    let d = decode_bytes(
        &wav(2, 8000, &[16384, -16384, 32767, -32768]),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(d.sample_rate, 8000);
    assert_eq!(d.source_channels, 2);
    assert_eq!(d.samples, vec![0.0, (32767.0 / 32768.0 - 1.0) / 2.0]);
}

#[test]
fn empty_input_is_refused_with_hint() {
    let e = err(&[]);
    assert!(matches!(e, AudioError::Empty), "{e:?}");
    assert!(e.to_string().contains("0 bytes"));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let limits = DecodeLimits {
        max_bytes: 100,
        ..Default::default()
    };
    // Not even valid audio: the size check comes first.
    let e = decode_bytes(&[0u8; 101], &limits).unwrap_err();
    assert!(
        matches!(
            e,
            AudioError::TooLarge {
                size: 101,
                limit: 100
            }
        ),
        "{e:?}"
    );
}

#[test]
fn too_long_audio_is_refused_from_the_header() {
    let path = common::voices_dir().join("belinda.wav");
    let limits = DecodeLimits {
        max_duration_secs: 1.0,
        ..Default::default()
    };
    match decode_file(&path, &limits).unwrap_err() {
        // The reported length is the header's full 10.17 s, so nothing was decoded first.
        AudioError::TooLong { seconds, limit } => {
            assert!((seconds - 10.17).abs() < 0.01, "{seconds}");
            assert_eq!(limit, 1.0);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn too_long_audio_without_length_in_header_is_cut_off_while_decoding() {
    // A streamed WAV (unknown data length, as our streaming writer emits) holds no duration.
    let mut b = wav(1, 8000, &vec![100i16; 8000 * 3]);
    b[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let limits = DecodeLimits {
        max_duration_secs: 1.0,
        ..Default::default()
    };
    match decode_bytes(&b, &limits).unwrap_err() {
        // Stopped just past the limit, not at the bogus 4 GiB data size.
        AudioError::TooLong { seconds, .. } => assert!((1.0..1.5).contains(&seconds), "{seconds}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn unknown_bytes_are_an_unsupported_format_listing_what_is_supported() {
    let e = err(b"hello, this is not an audio file at all, just some text bytes.");
    assert!(matches!(e, AudioError::UnsupportedFormat { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("unsupported audio format"), "{msg}");
    assert!(msg.contains("supported: wav, flac, mp3, ogg"), "{msg}");
    assert_eq!(e.error_type(), "audio_unsupported_format");
    assert!(e.is_input_error());
}

#[test]
fn truncated_wav_is_reported_as_truncated() {
    let full = wav(1, 16000, &vec![1000i16; 16000]);
    let e = err(&full[..full.len() / 2]);
    assert!(matches!(e, AudioError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("declares 1.000 s"), "{e}");
    // Cut inside the header.
    let e = err(&full[..30]);
    assert!(matches!(e, AudioError::Truncated { .. }), "{e:?}");
}

#[test]
fn zero_sample_rate_and_zero_channels_are_invalid_streams() {
    for (ch, rate) in [(1u16, 0u32), (0, 16000)] {
        let e = err(&wav(ch, rate, &[1, 2, 3, 4]));
        assert!(
            matches!(e, AudioError::InvalidStream { .. }),
            "ch={ch} rate={rate}: {e:?}"
        );
        assert!(e.to_string().contains("at least one channel"), "{e}");
    }
}

#[test]
fn absurd_sample_rate_is_refused() {
    let e = err(&wav(1, 4_000_000, &[1, 2, 3, 4]));
    assert!(matches!(e, AudioError::InvalidStream { .. }), "{e:?}");
    assert!(e.to_string().contains("4000000 Hz"), "{e}");
}

#[test]
fn header_without_samples_is_corrupt() {
    let e = err(&wav(1, 16000, &[]));
    assert!(matches!(e, AudioError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("no audio samples"), "{e}");
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let e = decode_file(
        std::path::Path::new("/nonexistent/voice.wav"),
        &DecodeLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, AudioError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/voice.wav"));
    assert!(!e.is_input_error());
}
