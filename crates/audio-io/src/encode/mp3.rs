//! MP3 via LAME (`mp3lame-encoder`, which compiles the LAME source bundled in `mp3lame-sys`).
//! CBR 64 kbit/s mono at quality 2 ("near best"), plenty for 24 kHz speech (MPEG-2 Layer III).
//! One-shot output starts with a LAME info tag (encoder delay and padding, so decoders trim to
//! the exact length); a stream cannot rewrite its first frame, so streamed output has no tag.

use super::to_i16_vec;
use crate::error::{AudioError, Result};
use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushGap, Mode, MonoPcm, Quality};

fn err(detail: impl std::fmt::Display) -> AudioError {
    AudioError::Encode {
        format: "mp3",
        detail: detail.to_string(),
    }
}

fn build(sample_rate: u32, info_tag: bool) -> Result<Encoder> {
    let mut b = Builder::new().ok_or_else(|| err("LAME could not allocate an encoder"))?;
    b.set_num_channels(1).map_err(err)?;
    b.set_sample_rate(sample_rate).map_err(err)?;
    b.set_mode(Mode::Mono).map_err(err)?;
    b.set_brate(Bitrate::Kbps64).map_err(err)?;
    b.set_quality(Quality::NearBest).map_err(err)?;
    b.set_to_write_vbr_tag(info_tag).map_err(err)?;
    b.build().map_err(err)
}

/// LAME's documented worst case for an output buffer: 1.25 × samples + 7200 bytes.
fn reserve(out: &mut Vec<u8>, samples: usize) {
    out.reserve(samples + samples / 4 + 7200);
}

fn push_into(enc: &mut Encoder, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
    // Feed in bounded pieces so the worst-case reservation stays small.
    for chunk in samples.chunks(1 << 16) {
        let pcm = to_i16_vec(chunk);
        reserve(out, pcm.len());
        enc.encode_to_vec(MonoPcm(&pcm), out).map_err(err)?;
    }
    Ok(())
}

fn flush_into(enc: &mut Encoder, out: &mut Vec<u8>) -> Result<()> {
    reserve(out, 0);
    enc.flush_to_vec::<FlushGap>(out).map_err(err)?;
    Ok(())
}

/// A complete MP3 file with a LAME info tag in its first frame.
pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    let mut enc = build(sample_rate, true)?;
    let mut out = Vec::new();
    push_into(&mut enc, samples, &mut out)?;
    flush_into(&mut enc, &mut out)?;
    // LAME wrote a placeholder frame first; overwrite it with the finished tag.
    let mut tag = Vec::with_capacity(enc.lame_tag_size().max(2880));
    if enc.lame_tag_encode_to_vec(&mut tag).is_some() {
        let start = enc.id3v2_tag_size();
        if let Some(slot) = out.get_mut(start..start + tag.len()) {
            slot.copy_from_slice(&tag);
        }
    }
    Ok(out)
}

/// Incremental MP3 encoder.
pub struct Mp3Stream {
    enc: Encoder,
}

impl Mp3Stream {
    pub fn new(sample_rate: u32) -> Result<Self> {
        Ok(Self {
            enc: build(sample_rate, false)?,
        })
    }

    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        push_into(&mut self.enc, samples, &mut out)?;
        Ok(out)
    }

    pub fn finish(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        flush_into(&mut self.enc, &mut out)?;
        Ok(out)
    }
}
