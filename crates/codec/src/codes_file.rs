//! The codes file format used by `higgs-serve codec encode/decode` (no reference counterpart; the
//! Python code keeps codes in memory or in `.npy`).
//!
//! Layout (all integers little-endian), version 1:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `b"HIGGSCDS"` |
//! | 8 | 2 | version (`1`) |
//! | 10 | 2 | `n_codebooks` (≥ 1) |
//! | 12 | 4 | `n_frames` |
//! | 16 | 4 | `sample_rate` (Hz) |
//! | 20 | 4 | `hop_length` (samples per frame; frame rate = sample_rate / hop_length) |
//! | 24 | 4 | `codebook_size` (every code is `< codebook_size` ≤ 65536) |
//! | 28 | 2·n_codebooks·n_frames | codes, `u16`, codebook-major (`[n_codebooks][n_frames]`) |
//!
//! The file length must be exactly `28 + 2·n_codebooks·n_frames`.

use crate::error::{CodecError, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"HIGGSCDS";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 28;

/// Codes of one utterance plus the metadata needed to decode them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodesFile {
    pub n_codebooks: usize,
    pub n_frames: usize,
    pub sample_rate: u32,
    pub hop_length: u32,
    pub codebook_size: u32,
    /// `n_codebooks * n_frames` codes, codebook-major.
    pub codes: Vec<u16>,
}

impl CodesFile {
    /// From a `[n_q, T]` integer tensor (e.g. [`crate::Codec::encode`] output).
    pub fn from_tensor(
        codes: &Tensor,
        sample_rate: u32,
        hop_length: u32,
        codebook_size: u32,
    ) -> Result<Self> {
        let (n_q, t) = codes.dims2()?;
        let rows: Vec<Vec<i64>> = codes.to_dtype(candle_core::DType::I64)?.to_vec2()?;
        let mut flat = Vec::with_capacity(n_q * t);
        for c in rows.into_iter().flatten() {
            if c < 0 || c >= i64::from(codebook_size) || c > i64::from(u16::MAX) {
                return Err(CodecError::CodesFile(format!(
                    "code {c} does not fit codebook size {codebook_size} / u16"
                )));
            }
            flat.push(c as u16);
        }
        let f = Self {
            n_codebooks: n_q,
            n_frames: t,
            sample_rate,
            hop_length,
            codebook_size,
            codes: flat,
        };
        f.validate()?;
        Ok(f)
    }

    /// `[n_q, T]` u32 tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let v: Vec<u32> = self.codes.iter().map(|c| u32::from(*c)).collect();
        Ok(Tensor::from_vec(
            v,
            (self.n_codebooks, self.n_frames),
            device,
        )?)
    }

    fn validate(&self) -> Result<()> {
        let err = |m: String| Err(CodecError::CodesFile(m));
        if self.n_codebooks == 0 || self.n_codebooks > usize::from(u16::MAX) {
            return err(format!(
                "n_codebooks {} outside 1..=65535",
                self.n_codebooks
            ));
        }
        if self.n_frames > u32::MAX as usize {
            return err(format!("{} frames do not fit u32", self.n_frames));
        }
        if self.sample_rate == 0 || self.hop_length == 0 {
            return err("sample_rate and hop_length must be positive".into());
        }
        if self.codebook_size == 0 || self.codebook_size > 65536 {
            return err(format!(
                "codebook_size {} outside 1..=65536",
                self.codebook_size
            ));
        }
        if self.codes.len() != self.n_codebooks * self.n_frames {
            return err(format!(
                "{} codes for {} codebooks × {} frames",
                self.codes.len(),
                self.n_codebooks,
                self.n_frames
            ));
        }
        if let Some(c) = self
            .codes
            .iter()
            .find(|c| u32::from(**c) >= self.codebook_size)
        {
            return err(format!("code {c} ≥ codebook_size {}", self.codebook_size));
        }
        Ok(())
    }

    /// Serialises to the byte layout above.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut b = Vec::with_capacity(HEADER_LEN + 2 * self.codes.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.n_codebooks as u16).to_le_bytes());
        b.extend_from_slice(&(self.n_frames as u32).to_le_bytes());
        b.extend_from_slice(&self.sample_rate.to_le_bytes());
        b.extend_from_slice(&self.hop_length.to_le_bytes());
        b.extend_from_slice(&self.codebook_size.to_le_bytes());
        for c in &self.codes {
            b.extend_from_slice(&c.to_le_bytes());
        }
        Ok(b)
    }

    /// Parses and validates bytes; never panics on malformed input.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let err = |m: String| Err(CodecError::CodesFile(m));
        if b.len() < HEADER_LEN {
            return err(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                b.len()
            ));
        }
        if &b[0..8] != MAGIC {
            return err("bad magic (not a Higgs codes file)".into());
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let version = u16_at(8);
        if version != VERSION {
            return err(format!(
                "unsupported version {version} (expected {VERSION})"
            ));
        }
        let n_codebooks = usize::from(u16_at(10));
        let n_frames = u32_at(12) as usize;
        let expected = n_codebooks
            .checked_mul(n_frames)
            .and_then(|n| n.checked_mul(2))
            .and_then(|n| n.checked_add(HEADER_LEN));
        if expected != Some(b.len()) {
            return err(format!(
                "length {} bytes does not match header ({n_codebooks} codebooks × {n_frames} frames)",
                b.len()
            ));
        }
        let codes = b[HEADER_LEN..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let f = Self {
            n_codebooks,
            n_frames,
            sample_rate: u32_at(16),
            hop_length: u32_at(20),
            codebook_size: u32_at(24),
            codes,
        };
        f.validate()?;
        Ok(f)
    }
}

/// Writes `file` to `path`.
pub fn write_codes(path: &Path, file: &CodesFile) -> Result<()> {
    std::fs::write(path, file.to_bytes()?).map_err(|source| CodecError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and validates a codes file.
pub fn read_codes(path: &Path) -> Result<CodesFile> {
    let b = std::fs::read(path).map_err(|source| CodecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    CodesFile::from_bytes(&b)
}
