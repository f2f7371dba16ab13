//! Opus in Ogg (RFC 7845) via libopus (`opus` → `opusic-sys`, which builds the bundled libopus
//! with cmake at compile time; nothing is needed at run time) and the pure-Rust `ogg` writer.
//! 20 ms frames, 32 kbit/s, `Application::Audio`. Input rates 8/12/16/24/48 kHz are coded
//! natively (24 kHz is the model's rate); the Ogg granule clock is always 48 kHz.

use super::to_i16_vec;
use crate::error::{AudioError, Result};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

/// Fixed so identical input gives identical bytes (streamed vs one-shot); a single logical
/// stream needs no uniqueness.
const SERIAL: u32 = 0x4869_6767; // "Higg"
const FRAME_MS: u32 = 20;
const BITRATE: i32 = 32_000;
/// libopus' recommended maximum packet size.
const MAX_PACKET: usize = 4000;
const VENDOR: &str = "higgs-serve (libopus)";

fn err(detail: impl std::fmt::Display) -> AudioError {
    AudioError::Encode {
        format: "opus",
        detail: detail.to_string(),
    }
}

pub struct OggOpusStream {
    enc: opus::Encoder,
    writer: PacketWriter<'static, Vec<u8>>,
    /// Samples per 20 ms frame at the input rate.
    frame: usize,
    /// 48 kHz ticks per input sample.
    scale: u64,
    /// Encoder lookahead in 48 kHz ticks (OpusHead pre-skip).
    pre_skip: u64,
    pending: Vec<i16>,
    frames_done: u64,
    samples_in: u64,
    packet: Vec<u8>,
}

impl OggOpusStream {
    pub fn new(sample_rate: u32) -> Result<Self> {
        let mut enc =
            opus::Encoder::new(sample_rate, opus::Channels::Mono, opus::Application::Audio)
                .map_err(err)?;
        enc.set_bitrate(opus::Bitrate::Bits(BITRATE)).map_err(err)?;
        let scale = u64::from(48_000 / sample_rate);
        let lookahead = u64::try_from(enc.get_lookahead().map_err(err)?).map_err(err)?;
        let pre_skip = lookahead * scale;

        let mut writer = PacketWriter::new(Vec::new());
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&u16::try_from(pre_skip).map_err(err)?.to_le_bytes());
        head.extend_from_slice(&sample_rate.to_le_bytes()); // informational input rate
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono/stereo
        writer
            .write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(err)?;
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
        tags.extend_from_slice(VENDOR.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        writer
            .write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(err)?;

        Ok(Self {
            enc,
            writer,
            frame: (sample_rate * FRAME_MS / 1000) as usize,
            scale,
            pre_skip,
            pending: Vec::new(),
            frames_done: 0,
            samples_in: 0,
            packet: vec![0; MAX_PACKET],
        })
    }

    /// Encodes every complete frame in `pending`; the last one gets `last_info` and `last_gp`
    /// (when given) instead of a normal packet's flags and granule.
    fn drain_frames(&mut self, last: Option<(PacketWriteEndInfo, u64)>) -> Result<()> {
        let n_frames = self.pending.len() / self.frame;
        let pcm: Vec<i16> = self.pending.drain(..n_frames * self.frame).collect();
        for (i, frame) in pcm.chunks(self.frame).enumerate() {
            let len = self.enc.encode(frame, &mut self.packet).map_err(err)?;
            self.frames_done += 1;
            let mut gp = self.frames_done * self.frame as u64 * self.scale;
            let mut info = PacketWriteEndInfo::NormalPacket;
            if i + 1 == n_frames {
                // Close the page after each push so the bytes can go out now.
                info = PacketWriteEndInfo::EndPage;
                if let Some((end_info, end_gp)) = last {
                    info = end_info;
                    gp = end_gp;
                }
            }
            self.writer
                .write_packet(self.packet[..len].to_vec(), SERIAL, info, gp)
                .map_err(err)?;
        }
        Ok(())
    }

    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        self.samples_in += samples.len() as u64;
        self.pending.extend(to_i16_vec(samples));
        self.drain_frames(None)?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    pub fn finish(&mut self) -> Result<Vec<u8>> {
        // Feed zeros until the encoder has emitted every real sample past its lookahead, and at
        // least one packet so the stream has an end-of-stream page.
        let lookahead = (self.pre_skip / self.scale) as usize;
        let encoded = self.frames_done as usize * self.frame;
        let needed = (self.samples_in as usize + lookahead).saturating_sub(encoded);
        let total = needed.div_ceil(self.frame).max(1) * self.frame;
        self.pending.resize(total, 0);
        // The final granule marks where real audio ends; decoders trim the padding after it.
        let end_gp = self.pre_skip + self.samples_in * self.scale;
        self.drain_frames(Some((PacketWriteEndInfo::EndStream, end_gp)))?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}
