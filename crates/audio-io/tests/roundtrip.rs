//! Every output format, one-shot and streamed, read back by independent decoders (ffmpeg/ffprobe,
//! sox) and, where it can, by our own reader.
#![allow(clippy::unwrap_used)]

mod common;

use common::{compare, run, test_signal, to_i16};
use higgs_audio_io::{decode_bytes, encode, AudioError, AudioFormat, DecodeLimits, StreamEncoder};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

const RATE: u32 = 24000;

/// 1.3 s of speech-like signal (odd length: partial codec blocks) with a few out-of-range
/// samples to exercise clipping.
fn signal() -> Vec<f32> {
    let mut x = test_signal(31_337, RATE);
    x[100] = 1.5;
    x[101] = -3.0;
    x[102] = 1.0;
    x[103] = -1.0;
    x
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audio-io-roundtrip");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// ffprobe's view of the first stream and the container.
fn ffprobe(path: &PathBuf) -> HashMap<String, String> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_name,sample_rate,channels,duration:format=format_name,duration")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path));
    let mut m = HashMap::new();
    for line in String::from_utf8(out).unwrap().lines() {
        if let Some((k, v)) = line.split_once('=') {
            // Stream keys come first; keep the first occurrence of `duration` (the stream's).
            m.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    m
}

/// ffmpeg's decode to mono s16le at 24 kHz. `raw_pcm` reads headerless s16le input.
fn ffmpeg_decode(path: &PathBuf, raw_pcm: bool) -> Vec<i16> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if raw_pcm {
        cmd.args(["-f", "s16le", "-ar", "24000", "-ac", "1"]);
    }
    cmd.arg("-i")
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "24000", "-"]);
    let bytes = run(&mut cmd);
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// sox's decode to s16 raw (an independent reader from ffmpeg for wav/flac).
fn sox_decode(path: &PathBuf) -> Vec<i16> {
    let bytes = run(Command::new("sox").arg(path).args(["-t", "s16", "-"]));
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn expected_i16(x: &[f32]) -> Vec<i16> {
    x.iter().map(|&s| to_i16(s)).collect()
}

fn as_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&s| s as f32 / 32768.0).collect()
}

#[cfg_attr(not(any(feature = "mp3", feature = "opus")), allow(dead_code))]
/// Best correlation of `got` against `want` over lags in `0..=max_lag` (decoder delay).
fn best_lag(want: &[f32], got: &[f32], max_lag: usize) -> (usize, f64) {
    let n = want
        .len()
        .min(got.len().saturating_sub(max_lag))
        .min(want.len() - 2000);
    (0..=max_lag)
        .map(|lag| (lag, compare(&want[1000..n], &got[1000 + lag..n + lag]).1))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

fn stream(format: AudioFormat, x: &[f32]) -> (Vec<u8>, usize) {
    let mut enc = StreamEncoder::new(format, RATE).unwrap();
    let mut out = Vec::new();
    let mut early = 0; // bytes returned before finish
    let mut pos = 0;
    for n in [1usize, 0, 100, 4095, 5000, 479, 481, 9000] {
        let end = (pos + n).min(x.len());
        out.extend(enc.push(&x[pos..end]).unwrap());
        pos = end;
    }
    out.extend(enc.push(&x[pos..]).unwrap());
    early += out.len();
    assert_eq!(enc.samples_in(), x.len() as u64);
    out.extend(enc.finish().unwrap());
    (out, early)
}

fn assert_probe(p: &HashMap<String, String>, codec: &str, format_name: &str, n: usize, tol_s: f64) {
    assert_eq!(p["codec_name"], codec, "{p:?}");
    assert!(
        p["format_name"].split(',').any(|f| f == format_name),
        "{p:?}"
    );
    assert_eq!(p["sample_rate"], "24000", "{p:?}");
    assert_eq!(p["channels"], "1", "{p:?}");
    let want = n as f64 / RATE as f64;
    let dur: f64 = p["duration"]
        .parse()
        .unwrap_or_else(|_| panic!("no duration: {p:?}"));
    assert!(
        (dur - want).abs() <= tol_s,
        "duration {dur} vs {want} ({p:?})"
    );
}

#[test]
fn wav_roundtrip_is_sample_exact_and_streamed_wav_matches() {
    let x = signal();
    let want = expected_i16(&x);
    let bytes = encode(AudioFormat::Wav, &x, RATE).unwrap();
    assert_eq!(bytes.len(), 44 + 2 * x.len());
    let path = tmp("oneshot.wav", &bytes);
    assert_probe(&ffprobe(&path), "pcm_s16le", "wav", x.len(), 1e-4);
    assert_eq!(ffmpeg_decode(&path, false), want);
    assert_eq!(sox_decode(&path), want);
    let own = decode_bytes(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!((own.sample_rate, own.source_channels), (RATE, 1));
    assert_eq!(own.samples, as_f32(&want));

    let (streamed, early) = stream(AudioFormat::Wav, &x);
    assert_eq!(early, streamed.len(), "wav streams everything as it comes");
    assert_eq!(&streamed[4..8], &[0xFF; 4], "RIFF size unknown");
    assert_eq!(&streamed[40..44], &[0xFF; 4], "data size unknown");
    assert_eq!(streamed[44..], bytes[44..], "same PCM payload");
    assert_eq!(
        (&streamed[..4], &streamed[8..40]),
        (&bytes[..4], &bytes[8..40])
    );
    let spath = tmp("streamed.wav", &streamed);
    let p = ffprobe(&spath);
    assert_eq!(
        (p["codec_name"].as_str(), p["sample_rate"].as_str()),
        ("pcm_s16le", "24000")
    );
    assert_eq!(ffmpeg_decode(&spath, false), want);
    assert_eq!(
        decode_bytes(&streamed, &DecodeLimits::default())
            .unwrap()
            .samples,
        as_f32(&want)
    );
}

#[test]
fn pcm_roundtrip_is_raw_s16le_and_streamed_pcm_is_identical() {
    let x = signal();
    let want = expected_i16(&x);
    let bytes = encode(AudioFormat::Pcm, &x, RATE).unwrap();
    assert_eq!(bytes.len(), 2 * x.len());
    let path = tmp("oneshot.pcm", &bytes);
    assert_eq!(ffmpeg_decode(&path, true), want);
    let (streamed, early) = stream(AudioFormat::Pcm, &x);
    assert_eq!(streamed, bytes);
    assert_eq!(early, bytes.len());
}

#[test]
fn flac_roundtrip_is_lossless_and_streamed_flac_has_identical_frames() {
    let x = signal();
    let want = expected_i16(&x);
    let bytes = encode(AudioFormat::Flac, &x, RATE).unwrap();
    assert!(
        bytes.len() < 2 * x.len(),
        "flac should compress: {}",
        bytes.len()
    );
    let path = tmp("oneshot.flac", &bytes);
    assert_probe(&ffprobe(&path), "flac", "flac", x.len(), 1e-4);
    assert_eq!(ffmpeg_decode(&path, false), want);
    assert_eq!(sox_decode(&path), want);
    // `flac -t`-style integrity: ffmpeg verifies the STREAMINFO MD5 of the one-shot file.
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"]));
    let own = decode_bytes(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(own.codec, "flac");
    assert_eq!(own.samples, as_f32(&want));

    let (streamed, early) = stream(AudioFormat::Flac, &x);
    assert!(
        early > 42 + 4096,
        "frames go out before finish (got {early} bytes early)"
    );
    let spath = tmp("streamed.flac", &streamed);
    let p = ffprobe(&spath);
    assert_eq!(
        (p["codec_name"].as_str(), p["sample_rate"].as_str()),
        ("flac", "24000")
    );
    assert_eq!(ffmpeg_decode(&spath, false), want);
    assert_eq!(sox_decode(&spath), want);
    // "fLaC" + 38-byte STREAMINFO block; after it, the frames are the same bytes.
    assert_eq!(&streamed[..4], b"fLaC");
    assert_eq!(streamed[42..], bytes[42..]);
    assert_eq!(
        decode_bytes(&streamed, &DecodeLimits::default())
            .unwrap()
            .samples,
        as_f32(&want)
    );
}

#[cfg(feature = "mp3")]
#[test]
fn mp3_roundtrip_correlates_and_has_exact_length_from_lame_tag() {
    let x = signal();
    let clipped = as_f32(&expected_i16(&x));
    let bytes = encode(AudioFormat::Mp3, &x, RATE).unwrap();
    let path = tmp("oneshot.mp3", &bytes);
    // ffprobe's duration counts whole 576-sample frames including the encoder delay; the decoded
    // length below is exact because the LAME tag lets ffmpeg trim delay and padding.
    assert_probe(&ffprobe(&path), "mp3", "mp3", x.len(), 0.1);
    let ff = as_f32(&ffmpeg_decode(&path, false));
    assert_eq!(ff.len(), x.len(), "gapless decode has the exact length");
    let (lag, corr) = best_lag(&clipped, &ff, 1200);
    eprintln!("mp3 one-shot via ffmpeg: lag {lag}, corr {corr:.4}");
    assert_eq!(lag, 0, "LAME tag delay is honoured");
    assert!(corr > 0.98, "corr {corr}");

    let own = decode_bytes(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!((own.sample_rate, own.source_channels), (RATE, 1));
    let (lag, corr) = best_lag(&clipped, &own.samples, 1200);
    eprintln!(
        "mp3 one-shot via own reader: {} samples, lag {lag}, corr {corr:.4}",
        own.samples.len()
    );
    // Symphonia reads the LAME tag too (gapless), so our reader also gets the exact length.
    assert_eq!(own.samples.len(), x.len());
    assert_eq!(lag, 0);
    assert!(corr > 0.98, "corr {corr}");

    let (streamed, early) = stream(AudioFormat::Mp3, &x);
    assert!(
        early > streamed.len() / 2,
        "most frames go out before finish"
    );
    let spath = tmp("streamed.mp3", &streamed);
    assert_probe(&ffprobe(&spath), "mp3", "mp3", x.len(), 0.1);
    let sf = as_f32(&ffmpeg_decode(&spath, false));
    let (lag, corr) = best_lag(&clipped, &sf, 2400);
    eprintln!(
        "mp3 streamed via ffmpeg: {} samples, lag {lag}, corr {corr:.4}",
        sf.len()
    );
    assert!(corr > 0.98, "corr {corr}");
}

#[cfg(feature = "opus")]
#[test]
fn opus_roundtrip_correlates_and_streamed_opus_decodes_identically() {
    let x = signal();
    let clipped = as_f32(&expected_i16(&x));
    let bytes = encode(AudioFormat::Opus, &x, RATE).unwrap();
    assert_eq!(&bytes[..4], b"OggS");
    let path = tmp("oneshot.opus", &bytes);
    let p = ffprobe(&path);
    assert_eq!(p["codec_name"], "opus", "{p:?}");
    assert_eq!(p["format_name"], "ogg", "{p:?}");
    assert_eq!(p["channels"], "1", "{p:?}");
    // Opus always decodes at 48 kHz; ffprobe reports that, OpusHead keeps 24000 as the input rate.
    assert_eq!(p["sample_rate"], "48000", "{p:?}");
    // ffprobe's container duration counts the pre-skip (~6.5 ms); the decoded length below is exact.
    let dur: f64 = p["duration"].parse().unwrap();
    assert!((dur - x.len() as f64 / RATE as f64).abs() < 0.01, "{dur}");
    let ff = as_f32(&ffmpeg_decode(&path, false));
    assert!(
        ff.len().abs_diff(x.len()) <= 1,
        "pre-skip and end trim give the input length: {}",
        ff.len()
    );
    let (lag, corr) = best_lag(&clipped, &ff, 1200);
    eprintln!(
        "opus one-shot via ffmpeg: {} samples, lag {lag}, corr {corr:.4}",
        ff.len()
    );
    assert!(lag <= 1, "pre-skip removes the encoder delay (lag {lag})");
    assert!(corr > 0.95, "corr {corr}");

    // Our reader decodes it back (libopus, at 48 kHz) to exactly the input duration.
    let own = decode_bytes(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!((own.sample_rate, own.source_channels), (48000, 1));
    assert_eq!(own.samples.len(), 2 * x.len());

    let (streamed, early) = stream(AudioFormat::Opus, &x);
    assert!(early > streamed.len() / 2, "pages go out before finish");
    let spath = tmp("streamed.opus", &streamed);
    assert_eq!(ffprobe(&spath)["codec_name"], "opus");
    assert_eq!(
        as_f32(&ffmpeg_decode(&spath, false)),
        ff,
        "same packets, same audio"
    );
}

#[test]
fn formats_parse_and_describe_themselves() {
    let table = [
        ("wav", AudioFormat::Wav, "audio/wav", "wav"),
        ("pcm", AudioFormat::Pcm, "audio/pcm", "pcm"),
        ("flac", AudioFormat::Flac, "audio/flac", "flac"),
        ("mp3", AudioFormat::Mp3, "audio/mpeg", "mp3"),
        ("opus", AudioFormat::Opus, "audio/ogg", "opus"),
        ("aac", AudioFormat::Aac, "audio/aac", "aac"),
    ];
    for (name, f, ct, ext) in table {
        assert_eq!(name.parse::<AudioFormat>().unwrap(), f);
        assert_eq!(name.to_uppercase().parse::<AudioFormat>().unwrap(), f);
        assert_eq!(f.to_string(), name);
        assert_eq!(f.content_type(), ct);
        assert_eq!(f.file_extension(), ext);
    }
    let e = "ogg".parse::<AudioFormat>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown audio format `ogg`; expected one of: wav, pcm, flac, mp3, opus, aac"
    );
}

#[test]
fn aac_and_bad_rates_are_clear_errors() {
    assert!(!AudioFormat::Aac.is_supported());
    let e = encode(AudioFormat::Aac, &[0.0; 10], RATE).unwrap_err();
    assert!(
        matches!(e, AudioError::UnsupportedOutput { format: "aac", .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("use one of: wav, pcm, flac, mp3, opus"),
        "{e}"
    );
    assert!(StreamEncoder::new(AudioFormat::Aac, RATE).is_err());

    let e = StreamEncoder::new(AudioFormat::Opus, 44100).err().unwrap();
    assert!(
        matches!(e, AudioError::InvalidSampleRate { rate: 44100, .. }),
        "{e:?}"
    );
    assert!(encode(AudioFormat::Wav, &[0.0], 0).is_err());
}

#[test]
fn empty_streams_are_valid_files() {
    for f in [
        AudioFormat::Wav,
        AudioFormat::Flac,
        AudioFormat::Mp3,
        AudioFormat::Opus,
    ] {
        if !f.is_supported() {
            continue;
        }
        let bytes = StreamEncoder::new(f, RATE).unwrap().finish().unwrap();
        let path = tmp(&format!("empty.{}", f.file_extension()), &bytes);
        let decoded = ffmpeg_decode(&path, false);
        assert!(
            decoded.len() < 2400,
            "{f}: {} samples from an empty stream",
            decoded.len()
        );
        let one = encode(f, &[], RATE).unwrap();
        let path = tmp(&format!("empty1.{}", f.file_extension()), &one);
        assert!(ffmpeg_decode(&path, false).len() < 2400, "{f} one-shot");
    }
}
