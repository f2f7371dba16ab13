//! FLAC via `flacenc` (pure Rust). One-shot uses flacenc's stream encoder (exact STREAMINFO with
//! total samples and MD5); streaming encodes the same fixed-size frames one by one, after a
//! STREAMINFO whose length and MD5 are 0 ("unknown", allowed by the FLAC format). Both use the
//! same block size and encoder settings, so their frames are identical byte for byte.

use super::to_i16;
use crate::error::{AudioError, Result};
use flacenc::bitsink::MemSink;
use flacenc::component::{BitRepr, Stream, StreamInfo};
use flacenc::config;
use flacenc::error::{Verified, Verify};
use flacenc::source::{Context, Fill, FrameBuf, MemSource};

const BITS: usize = 16;
/// flacenc's default (and libFLAC's) block size: 4096 samples, 171 ms at 24 kHz.
const BLOCK: usize = 4096;

fn err(detail: impl std::fmt::Display) -> AudioError {
    AudioError::Encode {
        format: "flac",
        detail: detail.to_string(),
    }
}

fn encoder_config() -> Result<Verified<config::Encoder>> {
    let mut cfg = config::Encoder::default();
    cfg.block_size = BLOCK;
    cfg.into_verified().map_err(|(_, e)| err(e))
}

fn to_i32s(samples: &[f32]) -> Vec<i32> {
    samples.iter().map(|&s| i32::from(to_i16(s))).collect()
}

fn bytes_of<T: BitRepr>(c: &T) -> Result<Vec<u8>> {
    let mut sink = MemSink::<u8>::new();
    c.write(&mut sink).map_err(err)?;
    Ok(sink.into_inner())
}

/// A complete FLAC file.
pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    let rate = sample_rate as usize;
    if samples.is_empty() {
        // flacenc wants at least one block; an empty stream is just the header.
        let mut info = StreamInfo::new(rate, 1, BITS).map_err(err)?;
        info.set_block_sizes(BLOCK, BLOCK).map_err(err)?;
        return bytes_of(&Stream::with_stream_info(info));
    }
    let source = MemSource::from_samples(&to_i32s(samples), 1, BITS, rate);
    let mut stream =
        flacenc::encode_with_fixed_block_size(&encoder_config()?, source, BLOCK).map_err(err)?;
    // flacenc counts the short last block in min_block_size; the format excludes it (libFLAC
    // writes 4096/4096), and symphonia's frame parser fails to sync on the smaller value.
    stream
        .stream_info_mut()
        .set_block_sizes(BLOCK, BLOCK)
        .map_err(err)?;
    bytes_of(&stream)
}

/// Frame-at-a-time FLAC encoder.
pub struct FlacStream {
    config: Verified<config::Encoder>,
    info: StreamInfo,
    fb: (FrameBuf, Context),
    pending: Vec<i32>,
    header_sent: bool,
}

impl FlacStream {
    pub fn new(sample_rate: u32) -> Result<Self> {
        let mut info = StreamInfo::new(sample_rate as usize, 1, BITS).map_err(err)?;
        info.set_block_sizes(BLOCK, BLOCK).map_err(err)?;
        // 0/0 = frame sizes unknown; total samples and MD5 stay 0 = unknown.
        info.set_frame_sizes(0, 0).map_err(err)?;
        Ok(Self {
            config: encoder_config()?,
            info,
            fb: (
                FrameBuf::with_size(1, BLOCK).map_err(err)?,
                Context::new(BITS, 1),
            ),
            pending: Vec::with_capacity(BLOCK * 2),
            header_sent: false,
        })
    }

    fn header(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if !self.header_sent {
            out.extend(bytes_of(&Stream::with_stream_info(self.info.clone()))?);
            self.header_sent = true;
        }
        Ok(())
    }

    fn frame(&mut self, block: &[i32], out: &mut Vec<u8>) -> Result<()> {
        self.fb.fill_interleaved(block).map_err(err)?;
        let number = self
            .fb
            .1
            .current_frame_number()
            .ok_or_else(|| err("frame counter unavailable"))?;
        let frame = flacenc::encode_fixed_size_frame(&self.config, &self.fb.0, number, &self.info)
            .map_err(err)?;
        out.extend(bytes_of(&frame)?);
        Ok(())
    }

    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.header(&mut out)?;
        self.pending.extend(to_i32s(samples));
        let full = self.pending.len() / BLOCK * BLOCK;
        let ready: Vec<i32> = self.pending.drain(..full).collect();
        for block in ready.chunks(BLOCK) {
            self.frame(block, &mut out)?;
        }
        Ok(out)
    }

    pub fn finish(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.header(&mut out)?;
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.frame(&last, &mut out)?;
        }
        Ok(out)
    }
}
