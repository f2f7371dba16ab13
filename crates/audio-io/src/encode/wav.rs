//! RIFF/WAVE writer. The 44-byte header is written by hand rather than with `hound`: it is a
//! fixed layout, and the streaming variant needs the `0xFFFFFFFF` "unknown length" sizes that
//! hound cannot emit (it seeks back to patch sizes, which a network stream cannot).

use super::pcm_s16le;

/// The canonical 44-byte PCM header for mono 16-bit audio. `data_bytes: None` writes
/// `0xFFFFFFFF` in both size fields (streamed output of unknown length).
pub fn header(sample_rate: u32, data_bytes: Option<u32>) -> [u8; 44] {
    const CHANNELS: u16 = 1;
    const BITS: u16 = 16;
    let block_align = CHANNELS * BITS / 8;
    let (riff_size, data_size) = match data_bytes {
        Some(n) => (n.saturating_add(36), n),
        None => (u32::MAX, u32::MAX),
    };
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff_size.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
    h[22..24].copy_from_slice(&CHANNELS.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&(sample_rate.saturating_mul(u32::from(block_align))).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&BITS.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_size.to_le_bytes());
    h
}

/// A complete WAV file with exact sizes. Clips longer than WAV's 4 GiB limit get the
/// unknown-length header, which readers treat as "data runs to the end of the file".
pub fn encode(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data = pcm_s16le(samples);
    let size = u32::try_from(data.len())
        .ok()
        .filter(|n| *n <= u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(&header(sample_rate, size));
    out.extend(data);
    out
}
