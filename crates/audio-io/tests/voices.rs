//! Every reference voice decodes: right duration, mono, and 24 kHz with librosa's length rule.
#![allow(clippy::unwrap_used)]

mod common;

use higgs_audio_io::{decode_bytes, decode_file, load_file, resampled_len, DecodeLimits};

#[test]
fn every_voice_decodes_to_mono_with_header_duration_and_resamples_to_24k() {
    let dir = common::voices_dir();
    let mut wavs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "voices dir {} unreadable: {e} (set HIGGS_VOICES)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    wavs.sort();
    assert!(
        wavs.len() >= 8,
        "expected the 8 reference voices in {}",
        dir.display()
    );
    let (mut rates, mut stereo) = (std::collections::BTreeSet::new(), 0);
    let limits = DecodeLimits::default();

    for path in &wavs {
        let bytes = std::fs::read(path).unwrap();
        let hdr = common::parse_wav_header(&bytes);
        let dec = decode_file(path, &limits).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(dec.sample_rate, hdr.rate, "{name}: rate");
        assert_eq!(
            dec.source_channels, hdr.channels as usize,
            "{name}: channels"
        );
        assert_eq!(
            dec.samples.len() as u64,
            hdr.frames,
            "{name}: frames (mono)"
        );
        assert!(
            (dec.duration_seconds() - hdr.frames as f64 / hdr.rate as f64).abs() < 1e-9,
            "{name}: duration"
        );
        assert!(
            dec.samples
                .iter()
                .all(|s| s.is_finite() && (-1.0..=1.0).contains(s)),
            "{name}: range"
        );

        // Content: for 16-bit PCM, mono = mean of channels of value/32768 (librosa.load).
        assert_eq!(hdr.bits, 16);
        let data_at = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
        let ch = hdr.channels as usize;
        for i in [0usize, 1, hdr.frames as usize / 2, hdr.frames as usize - 1] {
            let mut sum = 0f32;
            for c in 0..ch {
                let o = data_at + (i * ch + c) * 2;
                sum += i16::from_le_bytes([bytes[o], bytes[o + 1]]) as f32 / 32768.0;
            }
            assert_eq!(dec.samples[i], sum / ch as f32, "{name}: sample {i}");
        }

        // Bytes and path give the same result.
        assert_eq!(
            decode_bytes(&bytes, &limits).unwrap().samples,
            dec.samples,
            "{name}"
        );

        let y = load_file(path, 24000, &limits).unwrap();
        assert_eq!(
            y.len(),
            resampled_len(hdr.frames as usize, hdr.rate, 24000),
            "{name}: 24k length"
        );
        let want = (hdr.frames as f64 * 24000.0 / hdr.rate as f64).ceil() as usize;
        assert!(
            y.len().abs_diff(want) <= 1,
            "{name}: 24k length {} vs {want}",
            y.len()
        );
        if hdr.rate == 24000 {
            assert_eq!(y, dec.samples, "{name}: 24 kHz input is passed through");
        }
        rates.insert(hdr.rate);
        stereo += usize::from(hdr.channels == 2);
    }
    // The set is meant to cover mixed rates and a stereo file; make sure it still does.
    assert!(rates.len() >= 3, "rates covered: {rates:?}");
    assert!(stereo >= 1);
}
