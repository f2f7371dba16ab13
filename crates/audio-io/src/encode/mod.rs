//! Encoders for the speech API's output formats, one-shot and streaming.
//!
//! Input is mono f32 at the model's rate (24 kHz). Samples are clipped to [-1, 1] and scaled by
//! 32767 to 16 bits, truncating toward zero like the reference server's
//! `(np.clip(x, -1, 1) * 32767).astype(np.int16)`; NaN becomes 0.
//!
//! A [`StreamEncoder`] returns, from each [`push`](StreamEncoder::push), the bytes that may be sent
//! now, and from [`finish`](StreamEncoder::finish) the rest; their concatenation is one valid file.
//! What each format can do incrementally:
//!
//! | format | streaming behaviour |
//! |---|---|
//! | wav  | 44-byte header first, with `0xFFFFFFFF` RIFF/data sizes (length unknown, as OpenAI streams it); then PCM |
//! | pcm  | every push returns its samples |
//! | flac | header first (STREAMINFO with unknown length and MD5), then one frame per 4096 samples |
//! | mp3  | LAME frames as LAME releases them (CBR, no Xing/LAME tag) |
//! | opus | Ogg pages: headers first, then a page per push with the 20 ms packets completed so far |
//!
//! The one-shot [`encode`] writes exact lengths instead: sized WAV header, FLAC STREAMINFO with
//! total samples and MD5, and an MP3 LAME tag carrying the encoder delay and padding.

mod flac;
#[cfg(feature = "mp3")]
mod mp3;
#[cfg(feature = "opus")]
mod opus;
mod wav;

use crate::error::{AudioError, Result};
use crate::format::AudioFormat;

/// Converts one sample to 16-bit PCM: clip, scale by 32767, truncate toward zero (NaN → 0).
pub fn to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0; clamp keeps ±1 exact at ±32767.
    (x.clamp(-1.0, 1.0) * 32767.0) as i16
}

/// Converts a block of samples with [`to_i16`].
pub fn to_i16_vec(samples: &[f32]) -> Vec<i16> {
    samples.iter().copied().map(to_i16).collect()
}

/// Raw PCM s16le bytes of `samples` (the `pcm` format; also the WAV payload).
pub fn pcm_s16le(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for &s in samples {
        out.extend_from_slice(&to_i16(s).to_le_bytes());
    }
    out
}

/// Encodes a whole clip at once (exact lengths in headers).
pub fn encode(format: AudioFormat, samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    check_rate(format, sample_rate)?;
    match format {
        AudioFormat::Wav => Ok(wav::encode(samples, sample_rate)),
        AudioFormat::Pcm => Ok(pcm_s16le(samples)),
        AudioFormat::Flac => flac::encode(samples, sample_rate),
        #[cfg(feature = "mp3")]
        AudioFormat::Mp3 => mp3::encode(samples, sample_rate),
        #[cfg(feature = "opus")]
        AudioFormat::Opus => {
            let mut enc = opus::OggOpusStream::new(sample_rate)?;
            let mut out = enc.push(samples)?;
            out.extend(enc.finish()?);
            Ok(out)
        }
        other => Err(unsupported(other)),
    }
}

fn unsupported(format: AudioFormat) -> AudioError {
    match format {
        AudioFormat::Aac => AudioError::UnsupportedOutput {
            format: "aac",
            why: "no AAC encoder is built in (patent-encumbered; no pure-Rust or vendored encoder)",
        },
        AudioFormat::Mp3 => AudioError::UnsupportedOutput {
            format: "mp3",
            why: "this build was compiled without the `mp3` feature",
        },
        AudioFormat::Opus => AudioError::UnsupportedOutput {
            format: "opus",
            why: "this build was compiled without the `opus` feature",
        },
        AudioFormat::Wav | AudioFormat::Pcm | AudioFormat::Flac => AudioError::UnsupportedOutput {
            format: format.as_str(),
            why: "internal: format routed to the wrong encoder",
        },
    }
}

fn check_rate(format: AudioFormat, rate: u32) -> Result<()> {
    let ok = match format {
        // Opus codes only these rates; anything else must be resampled first.
        AudioFormat::Opus => matches!(rate, 8000 | 12000 | 16000 | 24000 | 48000),
        // MPEG-1/2/2.5 Layer III rates; LAME would silently resample anything else.
        AudioFormat::Mp3 => matches!(
            rate,
            8000 | 11025 | 12000 | 16000 | 22050 | 24000 | 32000 | 44100 | 48000
        ),
        // FLAC STREAMINFO holds 20 bits of rate; WAV 32.
        AudioFormat::Flac => (1..=655_350).contains(&rate),
        AudioFormat::Wav | AudioFormat::Pcm | AudioFormat::Aac => rate > 0,
    };
    if ok {
        Ok(())
    } else {
        Err(AudioError::InvalidSampleRate {
            rate,
            why: match format {
                AudioFormat::Opus => {
                    "opus encodes 8000, 12000, 16000, 24000 or 48000 Hz; resample first"
                }
                AudioFormat::Mp3 => "mp3 encodes 8000-48000 Hz standard rates; resample first",
                _ => "the rate must be positive (and below 655351 Hz for flac)",
            },
        })
    }
}

/// Incremental encoder: feed samples as they are generated, send what comes back.
pub struct StreamEncoder {
    format: AudioFormat,
    sample_rate: u32,
    inner: Inner,
    samples_in: u64,
}

enum Inner {
    Wav {
        header_sent: bool,
    },
    Pcm,
    Flac(Box<flac::FlacStream>),
    #[cfg(feature = "mp3")]
    Mp3(Box<mp3::Mp3Stream>),
    #[cfg(feature = "opus")]
    Opus(Box<opus::OggOpusStream>),
}

impl StreamEncoder {
    /// Starts a stream of `format` at `sample_rate` Hz (mono). Fails for AAC, for formats left
    /// out of this build, and for rates the codec cannot code.
    pub fn new(format: AudioFormat, sample_rate: u32) -> Result<Self> {
        check_rate(format, sample_rate)?;
        let inner = match format {
            AudioFormat::Wav => Inner::Wav { header_sent: false },
            AudioFormat::Pcm => Inner::Pcm,
            AudioFormat::Flac => Inner::Flac(Box::new(flac::FlacStream::new(sample_rate)?)),
            #[cfg(feature = "mp3")]
            AudioFormat::Mp3 => Inner::Mp3(Box::new(mp3::Mp3Stream::new(sample_rate)?)),
            #[cfg(feature = "opus")]
            AudioFormat::Opus => Inner::Opus(Box::new(opus::OggOpusStream::new(sample_rate)?)),
            other => return Err(unsupported(other)),
        };
        Ok(Self {
            format,
            sample_rate,
            inner,
            samples_in: 0,
        })
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples pushed so far.
    pub fn samples_in(&self) -> u64 {
        self.samples_in
    }

    /// Encodes `samples`; returns the bytes that are ready (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        self.samples_in += samples.len() as u64;
        match &mut self.inner {
            Inner::Wav { header_sent } => {
                let mut out = Vec::with_capacity(44 + samples.len() * 2);
                if !*header_sent {
                    out.extend_from_slice(&wav::header(self.sample_rate, None));
                    *header_sent = true;
                }
                out.extend(pcm_s16le(samples));
                Ok(out)
            }
            Inner::Pcm => Ok(pcm_s16le(samples)),
            Inner::Flac(f) => f.push(samples),
            #[cfg(feature = "mp3")]
            Inner::Mp3(m) => m.push(samples),
            #[cfg(feature = "opus")]
            Inner::Opus(o) => o.push(samples),
        }
    }

    /// Ends the stream; returns the remaining bytes. Consumes the encoder.
    pub fn finish(self) -> Result<Vec<u8>> {
        match self.inner {
            // A stream with no samples is still a valid (empty) file.
            Inner::Wav { header_sent } => Ok(if header_sent {
                Vec::new()
            } else {
                wav::header(self.sample_rate, None).to_vec()
            }),
            Inner::Pcm => Ok(Vec::new()),
            Inner::Flac(mut f) => f.finish(),
            #[cfg(feature = "mp3")]
            Inner::Mp3(mut m) => m.finish(),
            #[cfg(feature = "opus")]
            Inner::Opus(mut o) => o.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i16_conversion_clips_scales_and_truncates() {
        assert_eq!(to_i16(0.0), 0);
        assert_eq!(to_i16(1.0), 32767);
        assert_eq!(to_i16(-1.0), -32767);
        assert_eq!(to_i16(2.5), 32767);
        assert_eq!(to_i16(-7.0), -32767);
        assert_eq!(to_i16(f32::NAN), 0);
        // 0.5 * 32767 = 16383.5 → truncated toward zero, as numpy's astype(int16).
        assert_eq!(to_i16(0.5), 16383);
        assert_eq!(to_i16(-0.5), -16383);
    }
}
