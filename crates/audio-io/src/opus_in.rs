//! Opus input (Ogg Opus, WebM/Matroska Opus): symphonia demuxes it but has no Opus decoder, so
//! packets go to libopus (already linked for output). Decoded at 48 kHz, Opus' native rate, as
//! opusfile/libsndfile do; the caller resamples.

use crate::decode::PacketError;
use crate::error::{AudioError, Result};
use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::formats::Track;
use symphonia::core::packet::Packet;

const RATE: u32 = 48_000;
/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_FRAMES: usize = 5760;

pub(crate) struct OpusDecoder {
    dec: opus::Decoder,
    channels: usize,
    buf: Vec<f32>,
    /// Pre-skip in 48 kHz frames (OpusHead), applied at the end unless the demuxer trimmed.
    pre_skip: usize,
    /// Whether the demuxer already cut the pre-skip (Ogg sets only the end trim in practice).
    start_trimmed: bool,
}

impl OpusDecoder {
    pub(crate) fn new(params: &AudioCodecParameters, track: &Track) -> Result<Self> {
        // OpusHead (the codec's extra data): channel count at byte 9, pre-skip at 10..12.
        let head = params.extra_data.as_deref().unwrap_or_default();
        let channels = params
            .channels
            .as_ref()
            .map(|c| c.count())
            .or_else(|| head.get(9).map(|&c| usize::from(c)))
            .unwrap_or(0);
        let layout = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            0 => {
                return Err(AudioError::InvalidStream {
                    detail: "the opus stream has 0 channels".to_owned(),
                })
            }
            n => {
                return Err(AudioError::UnsupportedFormat {
                    detail: format!("multichannel opus ({n} channels) cannot be decoded"),
                })
            }
        };
        let pre_skip = track
            .delay
            .filter(|&d| d > 0)
            .map(|d| d as usize)
            .or_else(|| {
                head.get(10..12)
                    .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            })
            .unwrap_or(0);
        let dec = opus::Decoder::new(RATE, layout).map_err(|e| AudioError::Corrupt {
            detail: format!("cannot set up the opus decoder: {e}"),
        })?;
        Ok(Self {
            dec,
            channels,
            buf: vec![0.0; MAX_FRAMES * channels],
            pre_skip,
            start_trimmed: false,
        })
    }

    pub(crate) fn decode(
        &mut self,
        packet: &Packet,
        out: &mut Vec<f32>,
    ) -> std::result::Result<Option<(u32, usize)>, PacketError> {
        let frames = self
            .dec
            .decode_float(&packet.data, &mut self.buf, false)
            .map_err(|e| PacketError::Bad(e.to_string()))?;
        let frames = frames.min(MAX_FRAMES);
        // Ogg demuxing marks pre-skip and end padding per packet; honour it here.
        let start = usize::try_from(packet.trim_start.get())
            .unwrap_or(frames)
            .min(frames);
        let end_trim = usize::try_from(packet.trim_end.get())
            .unwrap_or(frames)
            .min(frames - start);
        self.start_trimmed |= start > 0;
        let ch = self.channels;
        for frame in self.buf[start * ch..(frames - end_trim) * ch].chunks_exact(ch) {
            out.push(frame.iter().sum::<f32>() / ch as f32);
        }
        Ok(Some((RATE, ch)))
    }

    /// Cuts the pre-skip (if the demuxer did not) and the end padding; returns the length the
    /// container declares for the real audio.
    pub(crate) fn finish(&self, track: &Track, samples: &mut Vec<f32>) -> Option<u64> {
        let mut declared = track.num_frames;
        if !self.start_trimmed && self.pre_skip > 0 {
            samples.drain(..self.pre_skip.min(samples.len()));
            // Symphonia's Ogg frame count is the last granule, which still includes the pre-skip.
            declared = declared.map(|n| n.saturating_sub(self.pre_skip as u64));
        }
        if let Some(n) = declared.and_then(|n| usize::try_from(n).ok()) {
            samples.truncate(n);
        }
        declared
    }
}
