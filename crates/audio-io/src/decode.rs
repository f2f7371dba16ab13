//! Decoding uploads and voice files into mono f32, like `librosa.load(path, sr=None, mono=True)`.
//!
//! Symphonia does the container and codec work (pure Rust). Samples are converted to f32 in
//! [-1, 1] by symphonia's rules (integer PCM divided by 2^(bits-1), as libsndfile does for
//! librosa), then channels are averaged per frame (`librosa.to_mono`). Limits are checked before
//! decoding where the header allows it, and again while decoding so a lying header cannot make
//! us decode forever.

use crate::error::{AudioError, Result};
#[cfg(feature = "opus")]
use crate::opus_in;
use crate::resample::{resample, MAX_SAMPLE_RATE};
use std::io::Cursor;
use std::path::Path;
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoderOptions};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// Bounds on what a decode may cost. The defaults suit reference-voice uploads.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeLimits {
    /// Largest encoded input accepted, in bytes (checked before anything is parsed).
    pub max_bytes: u64,
    /// Longest audio accepted, in seconds (checked from the header, then while decoding).
    pub max_duration_secs: f64,
    /// Highest source sample rate accepted; bounds memory together with the duration.
    pub max_sample_rate: u32,
    /// Most channels accepted.
    pub max_channels: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            // OpenAI's upload limit for audio files.
            max_bytes: 25 * 1024 * 1024,
            max_duration_secs: 300.0,
            max_sample_rate: 192_000,
            max_channels: 32,
        }
    }
}

/// Mono audio at its source rate, with what the container said about the source.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples in [-1, 1] (channel average).
    pub samples: Vec<f32>,
    /// Sample rate of `samples`, in Hz (the source rate).
    pub sample_rate: u32,
    /// Channel count of the source before downmixing.
    pub source_channels: usize,
    /// Short name of the container (e.g. "wave", "flac", "ogg").
    pub container: &'static str,
    /// Short name of the codec (e.g. "pcm_s16le", "mp3", "vorbis").
    pub codec: String,
}

impl DecodedAudio {
    /// Length in seconds.
    pub fn duration_seconds(&self) -> f64 {
        duration_seconds(self.samples.len(), self.sample_rate)
    }

    /// The samples resampled to `rate` (librosa soxr_hq); a copy when the rate already matches.
    pub fn resampled(&self, rate: u32) -> Result<Vec<f32>> {
        resample(&self.samples, self.sample_rate, rate)
    }
}

/// Seconds spanned by `n_samples` mono samples at `sample_rate` (0 for a zero rate).
pub fn duration_seconds(n_samples: usize, sample_rate: u32) -> f64 {
    if sample_rate == 0 {
        return 0.0;
    }
    n_samples as f64 / f64::from(sample_rate)
}

/// Decodes an in-memory file (e.g. a base64-decoded upload) to mono at its source rate.
pub fn decode_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedAudio> {
    check_size(bytes.len() as u64, limits)?;
    // Copy so the source is 'static + Send + Sync as symphonia's boxed source wants.
    let head = sniff_container(&bytes[..bytes.len().min(16)]);
    let source = Cursor::new(bytes.to_vec());
    decode_source(Box::new(source), &Hint::new(), head, limits)
}

/// What a file's header declares, read without decoding any audio.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioHeader {
    /// Short name of the container (e.g. "wave", "flac", "ogg").
    pub container: &'static str,
    pub sample_rate: Option<u32>,
    pub channels: Option<usize>,
    /// Length the header declares (frames / rate), when it declares one (mp3 without a Xing/Info
    /// frame, streamed ogg and the like do not: their length is only bounded while decoding).
    pub declared_seconds: Option<f64>,
}

/// Reads the container header of an in-memory file (symphonia's probe and track parameters, no
/// packet decoded) and checks it against `limits` (bytes, rate, channels, declared duration): the
/// cheap check to run on every part of a request before any of them is decoded.
pub fn probe_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<AudioHeader> {
    check_size(bytes.len() as u64, limits)?;
    let head = sniff_container(&bytes[..bytes.len().min(16)]);
    let source = Cursor::new(bytes.to_vec());
    let run = || -> Result<AudioHeader> {
        let mss = MediaSourceStream::new(Box::new(source), MediaSourceStreamOptions::default());
        let format = symphonia::default::get_probe()
            .probe(
                &Hint::new(),
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| open_error(e, head))?;
        let container = format.format_info().short_name;
        let track = format
            .default_track(TrackType::Audio)
            .or_else(|| format.first_track_known_codec(TrackType::Audio))
            .ok_or(AudioError::NoAudioTrack)?;
        let (sample_rate, channels) = match &track.codec_params {
            Some(CodecParameters::Audio(p)) => {
                (p.sample_rate, p.channels.as_ref().map(|c| c.count()))
            }
            _ => return Err(AudioError::NoAudioTrack),
        };
        if let Some(rate) = sample_rate {
            check_stream_rate(rate, limits)?;
        }
        if let Some(ch) = channels {
            check_channels(ch, limits)?;
        }
        let declared_seconds = match (track.num_frames, sample_rate) {
            (Some(frames), Some(rate)) => Some(frames as f64 / f64::from(rate)),
            _ => None,
        };
        if let Some(seconds) = declared_seconds.filter(|s| *s > limits.max_duration_secs) {
            return Err(AudioError::TooLong {
                seconds,
                limit: limits.max_duration_secs,
            });
        }
        Ok(AudioHeader {
            container,
            sample_rate,
            channels,
            declared_seconds,
        })
    };
    // As in decoding: a demuxer panic on a malformed header is corrupt input, not a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(AudioError::Corrupt {
            detail: "the container header is malformed".to_owned(),
        })
    })
}

/// Decodes a file to mono at its source rate. The extension is only a hint; content decides.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<DecodedAudio> {
    let io_err = |source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    check_size(len, limits)?;
    let mut head = [0u8; 16];
    let n = read_head(&mut file, &mut head).map_err(io_err)?;
    let head = sniff_container(&head[..n]);
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    decode_source(Box::new(file), &hint, head, limits)
}

/// Reads up to `buf.len()` leading bytes and rewinds.
fn read_head(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(n)
}

/// `librosa.load(path, sr=rate, mono=True)` for bytes: decode, downmix, resample to `rate`.
pub fn load_bytes(bytes: &[u8], rate: u32, limits: &DecodeLimits) -> Result<Vec<f32>> {
    decode_bytes(bytes, limits)?.resampled(rate)
}

/// `librosa.load(path, sr=rate, mono=True)`: decode, downmix, resample to `rate`.
pub fn load_file(path: &Path, rate: u32, limits: &DecodeLimits) -> Result<Vec<f32>> {
    decode_file(path, limits)?.resampled(rate)
}

fn check_size(size: u64, limits: &DecodeLimits) -> Result<()> {
    if size == 0 {
        return Err(AudioError::Empty);
    }
    if size > limits.max_bytes {
        return Err(AudioError::TooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

/// Maps a symphonia error met while probing or reading headers.
fn open_error(e: SymError, head: Option<&'static str>) -> AudioError {
    match e {
        SymError::Unsupported(what) => AudioError::UnsupportedFormat {
            detail: what.to_owned(),
        },
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => match head {
            Some(kind) => AudioError::Truncated {
                detail: format!("the data starts like {kind} but ends early"),
            },
            None => AudioError::UnsupportedFormat {
                detail: "no known audio container header found (input too short or not audio)"
                    .to_owned(),
            },
        },
        SymError::IoError(io) => AudioError::Corrupt {
            detail: format!("read error: {io}"),
        },
        // Readers reject zero channels / rates themselves; report those as the stream errors they are.
        SymError::DecodeError(what) if what.contains("channel") || what.contains("sample rate") => {
            AudioError::InvalidStream {
                detail: what.to_owned(),
            }
        }
        SymError::DecodeError(what) => AudioError::Corrupt {
            detail: format!("malformed header: {what}"),
        },
        SymError::LimitError(what) => AudioError::Corrupt {
            detail: format!("header exceeds a decoder limit: {what}"),
        },
        // Seek and reset errors, and variants added by later symphonia releases.
        other => AudioError::Corrupt {
            detail: other.to_string(),
        },
    }
}

fn decode_source(
    source: Box<dyn MediaSource>,
    hint: &Hint,
    head: Option<&'static str>,
    limits: &DecodeLimits,
) -> Result<DecodedAudio> {
    // Symphonia has arithmetic-overflow and indexing panics on some malformed headers (found by
    // tests/no_panic.rs, e.g. in the CAF demuxer). Uploads are untrusted, so a panic inside the
    // decoder is caught here and reported as corrupt input instead of taking a worker down.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_source_inner(source, hint, head, limits)
    })) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::warn!(panic = %what, "audio decoder panicked on malformed input");
            Err(AudioError::Corrupt {
                detail: format!("the decoder rejected malformed data ({what})"),
            })
        }
    }
}

fn decode_source_inner(
    source: Box<dyn MediaSource>,
    hint: &Hint,
    head: Option<&'static str>,
    limits: &DecodeLimits,
) -> Result<DecodedAudio> {
    let mss = MediaSourceStream::new(source, MediaSourceStreamOptions::default());
    let format = symphonia::default::get_probe()
        .probe(
            hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| open_error(e, head))?;
    decode_format(format, head, limits)
}

fn decode_format(
    mut format: Box<dyn FormatReader + '_>,
    head: Option<&'static str>,
    limits: &DecodeLimits,
) -> Result<DecodedAudio> {
    let container = format.format_info().short_name;
    let track = format
        .default_track(TrackType::Audio)
        .or_else(|| format.first_track_known_codec(TrackType::Audio))
        .ok_or(AudioError::NoAudioTrack)?
        .clone();
    let params = match &track.codec_params {
        Some(CodecParameters::Audio(p)) => p.clone(),
        _ => return Err(AudioError::NoAudioTrack),
    };
    let mut decoder = PacketDecoder::new(&params, &track, container)?;
    let codec = decoder.name();

    // Header checks, before any packet is decoded.
    let header_rate = params.sample_rate;
    if let Some(rate) = header_rate {
        check_stream_rate(rate, limits)?;
    }
    if let Some(ch) = &params.channels {
        check_channels(ch.count(), limits)?;
    }
    if let (Some(frames), Some(rate)) = (track.num_frames, header_rate) {
        let seconds = frames as f64 / f64::from(rate);
        if seconds > limits.max_duration_secs {
            return Err(AudioError::TooLong {
                seconds,
                limit: limits.max_duration_secs,
            });
        }
    }

    let mut samples: Vec<f32> = Vec::new();
    let mut rate: Option<u32> = header_rate;
    let mut channels: Option<usize> = None;
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let (mut packets, mut bad_packets) = (0usize, 0usize);
    let mut last_error: Option<String> = None;
    let mut truncated = false;

    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::IoError(io)) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            Err(SymError::ResetRequired) => {
                // A chained stream with new parameters (e.g. concatenated oggs): keep what we have.
                tracing::warn!("audio stream changed parameters mid-stream; decoding stops there");
                break;
            }
            Err(SymError::DecodeError(what)) => {
                return Err(AudioError::Corrupt {
                    detail: format!("malformed {container} container: {what}"),
                })
            }
            Err(e) => return Err(open_error(e, head)),
        };
        if packet.track_id != track.id {
            continue;
        }
        packets += 1;
        let (buf_rate, buf_channels) = match decoder.decode(&packet, &mut planes, &mut samples) {
            Ok(Some(spec)) => spec,
            Ok(None) => continue,
            Err(PacketError::Bad(what)) => {
                // Lossy streams often carry a damaged frame; players skip it, so do we, but a
                // stream that is mostly damage is refused below.
                bad_packets += 1;
                last_error = Some(what);
                continue;
            }
            Err(PacketError::Eof) => {
                truncated = true;
                break;
            }
            Err(PacketError::Unsupported(what)) => {
                return Err(AudioError::UnsupportedFormat {
                    detail: format!("{codec} stream: {what}"),
                })
            }
            Err(PacketError::Fatal(what)) => {
                return Err(AudioError::Corrupt {
                    detail: format!("{codec} decode failed: {what}"),
                })
            }
        };
        match rate {
            None => {
                check_stream_rate(buf_rate, limits)?;
                rate = Some(buf_rate);
            }
            Some(r) if r != buf_rate => {
                return Err(AudioError::UnsupportedFormat {
                    detail: format!("sample rate changes mid-stream ({r} Hz → {buf_rate} Hz)"),
                })
            }
            Some(_) => {}
        }
        match channels {
            None => {
                check_channels(buf_channels, limits)?;
                channels = Some(buf_channels);
            }
            Some(c) if c != buf_channels => {
                return Err(AudioError::UnsupportedFormat {
                    detail: format!("channel count changes mid-stream ({c} → {buf_channels})"),
                })
            }
            Some(_) => {}
        }
        if let Some(r) = rate {
            let seconds = duration_seconds(samples.len(), r);
            if seconds > limits.max_duration_secs {
                return Err(AudioError::TooLong {
                    seconds,
                    limit: limits.max_duration_secs,
                });
            }
        }
    }

    if packets > 0 && bad_packets * 10 > packets.max(10) {
        return Err(AudioError::Corrupt {
            detail: format!(
                "{bad_packets} of {packets} {codec} packets failed to decode (last: {})",
                last_error.unwrap_or_default()
            ),
        });
    }
    if bad_packets > 0 {
        tracing::warn!(bad_packets, packets, codec = %codec, "skipped undecodable audio packets");
    }
    let (Some(sample_rate), Some(source_channels)) = (rate, channels) else {
        return Err(if truncated {
            AudioError::Truncated {
                detail: format!("the {container} stream ends before its first audio frame"),
            }
        } else if bad_packets > 0 {
            AudioError::Corrupt {
                detail: format!(
                    "no {codec} packet could be decoded (last error: {})",
                    last_error.unwrap_or_default()
                ),
            }
        } else {
            AudioError::Corrupt {
                detail: format!("the {container} file contains no audio samples"),
            }
        });
    };
    let declared = decoder.finish(&track, &mut samples);
    if samples.is_empty() {
        return Err(AudioError::Corrupt {
            detail: format!("the {container} file contains no audio samples"),
        });
    }
    if let Some(declared) = declared {
        let got = samples.len() as u64;
        if truncated || got < declared {
            // The header promised more audio than the bytes hold: an interrupted upload or copy.
            return Err(AudioError::Truncated {
                detail: format!(
                    "the header declares {:.3} s but the data ends after {:.3} s",
                    declared as f64 / f64::from(sample_rate),
                    got as f64 / f64::from(sample_rate)
                ),
            });
        }
    } else if truncated {
        tracing::warn!(
            container,
            "audio stream ended mid-packet; keeping the decoded part"
        );
    }

    Ok(DecodedAudio {
        samples,
        sample_rate,
        source_channels,
        container,
        codec,
    })
}

/// Why one packet did not decode.
pub(crate) enum PacketError {
    /// Damaged packet: skip it (counted).
    Bad(String),
    /// The data ended inside the packet.
    Eof,
    Unsupported(String),
    Fatal(String),
}

/// Symphonia's decoders, plus libopus for Opus tracks (symphonia demuxes Opus but cannot decode it).
enum PacketDecoder {
    Symphonia {
        decoder: Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
        name: String,
    },
    #[cfg(feature = "opus")]
    Opus(opus_in::OpusDecoder),
}

impl PacketDecoder {
    fn new(
        params: &symphonia::core::codecs::audio::AudioCodecParameters,
        track: &symphonia::core::formats::Track,
        container: &str,
    ) -> Result<Self> {
        #[cfg(feature = "opus")]
        if params.codec == symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS {
            return Ok(PacketDecoder::Opus(opus_in::OpusDecoder::new(
                params, track,
            )?));
        }
        let _ = track;
        let registry = symphonia::default::get_codecs();
        let name = registry
            .get_audio_decoder(params.codec)
            .map(|d| d.codec.info.short_name.to_owned())
            .ok_or_else(|| AudioError::UnsupportedFormat {
                detail: format!(
                    "{} audio in a {container} container cannot be decoded",
                    codec_name(params.codec)
                ),
            })?;
        let decoder = registry
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| match e {
                SymError::Unsupported(what) => AudioError::UnsupportedFormat {
                    detail: format!("{name} stream: {what}"),
                },
                other => AudioError::Corrupt {
                    detail: format!("cannot set up the {name} decoder: {other}"),
                },
            })?;
        Ok(PacketDecoder::Symphonia { decoder, name })
    }

    fn name(&self) -> String {
        match self {
            PacketDecoder::Symphonia { name, .. } => name.clone(),
            #[cfg(feature = "opus")]
            PacketDecoder::Opus(_) => "opus".to_owned(),
        }
    }

    /// Decodes one packet, appending its mono downmix to `out`; returns (rate, channels) of the
    /// decoded audio, or `None` for a packet without audio.
    fn decode(
        &mut self,
        packet: &symphonia::core::packet::Packet,
        planes: &mut Vec<Vec<f32>>,
        out: &mut Vec<f32>,
    ) -> Result<Option<(u32, usize)>, PacketError> {
        match self {
            PacketDecoder::Symphonia { decoder, .. } => {
                let buf = decoder.decode(packet).map_err(|e| match e {
                    SymError::DecodeError(what) => PacketError::Bad(what.to_owned()),
                    SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                        PacketError::Eof
                    }
                    SymError::Unsupported(what) => PacketError::Unsupported(what.to_owned()),
                    other => PacketError::Fatal(other.to_string()),
                })?;
                let spec = (buf.spec().rate(), buf.spec().channels().count());
                if buf.frames() > 0 {
                    buf.copy_to_vecs_planar::<f32>(planes);
                    downmix_into(planes, out);
                }
                Ok(Some(spec))
            }
            #[cfg(feature = "opus")]
            PacketDecoder::Opus(d) => d.decode(packet, out),
        }
    }

    /// Applies trims that need the whole stream; returns the frame count the container declares
    /// for the audio (to detect truncation).
    fn finish(
        &self,
        track: &symphonia::core::formats::Track,
        samples: &mut Vec<f32>,
    ) -> Option<u64> {
        match self {
            PacketDecoder::Symphonia { .. } => {
                let _ = samples;
                track.num_frames
            }
            #[cfg(feature = "opus")]
            PacketDecoder::Opus(d) => d.finish(track, samples),
        }
    }
}

/// Readable names for codecs that containers we read may carry but we cannot decode.
fn codec_name(id: AudioCodecId) -> String {
    use symphonia::core::codecs::audio::well_known as wk;
    let name = match id {
        wk::CODEC_ID_OPUS => "opus",
        wk::CODEC_ID_SPEEX => "speex",
        wk::CODEC_ID_AC3 => "ac-3",
        wk::CODEC_ID_EAC3 => "e-ac-3",
        wk::CODEC_ID_DCA => "dts",
        wk::CODEC_ID_WMA => "wma",
        wk::CODEC_ID_WAVPACK => "wavpack",
        wk::CODEC_ID_MONKEYS_AUDIO => "monkey's audio",
        wk::CODEC_ID_TTA => "tta",
        wk::CODEC_ID_TRUEHD => "truehd",
        _ => return format!("codec {id}"),
    };
    name.to_owned()
}

/// Container magic numbers, to tell "cut off inside its header" from "not audio at all".
fn sniff_container(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"RIFF") || starts(b"RF64") {
        Some("wav")
    } else if starts(b"fLaC") {
        Some("flac")
    } else if starts(b"OggS") {
        Some("ogg")
    } else if starts(b"ID3") || head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        Some("mp3")
    } else if starts(b"FORM") {
        Some("aiff")
    } else if starts(b"caff") {
        Some("caf")
    } else if head.len() >= 8 && &head[4..8] == b"ftyp" {
        Some("mp4")
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some("mkv/webm")
    } else {
        None
    }
}

fn check_stream_rate(rate: u32, limits: &DecodeLimits) -> Result<()> {
    if rate == 0 {
        return Err(AudioError::InvalidStream {
            detail: "the header gives a sample rate of 0 Hz".to_owned(),
        });
    }
    let max = limits.max_sample_rate.min(MAX_SAMPLE_RATE);
    if rate > max {
        return Err(AudioError::InvalidStream {
            detail: format!("sample rate {rate} Hz is above the accepted maximum of {max} Hz"),
        });
    }
    Ok(())
}

fn check_channels(count: usize, limits: &DecodeLimits) -> Result<()> {
    if count == 0 {
        return Err(AudioError::InvalidStream {
            detail: "the stream has 0 channels".to_owned(),
        });
    }
    if count > limits.max_channels {
        return Err(AudioError::InvalidStream {
            detail: format!(
                "{count} channels is above the accepted maximum of {}",
                limits.max_channels
            ),
        });
    }
    Ok(())
}

/// Appends the per-frame channel average (`np.mean(y, axis=0)` in float32).
fn downmix_into(planes: &[Vec<f32>], out: &mut Vec<f32>) {
    match planes {
        [] => {}
        [mono] => out.extend_from_slice(mono),
        [first, rest @ ..] => {
            let n = planes.len() as f32;
            out.extend(first.iter().enumerate().map(|(i, &s0)| {
                let sum = rest
                    .iter()
                    .fold(s0, |acc, p| acc + p.get(i).copied().unwrap_or(0.0));
                sum / n
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix_into(&[vec![1.0, 0.5], vec![0.0, -0.5]], &mut out);
        assert_eq!(out, vec![0.5, 0.0]);
    }

    #[test]
    fn duration_helper() {
        assert_eq!(duration_seconds(48000, 24000), 2.0);
        assert_eq!(duration_seconds(10, 0), 0.0);
    }
}
