//! Audio codes: the `[num_codebooks, frames]` matrix the model generates and the codec decodes.
//! Owned here because the codec defines what a frame is; the engine and the model's prompt
//! builder use the same type.

use candle_core::Tensor;

use crate::error::{CodecError, Result};
use crate::higgs_audio_tokenizer::Codec;

/// A `[num_codebooks, frames]` code matrix, row-major (row k = codebook k).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Codes {
    pub num_codebooks: usize,
    pub data: Vec<u32>,
}

impl Codes {
    pub fn new(num_codebooks: usize, data: Vec<u32>) -> Option<Self> {
        (num_codebooks > 0 && data.len() % num_codebooks == 0).then_some(Self {
            num_codebooks,
            data,
        })
    }

    pub fn empty(num_codebooks: usize) -> Self {
        Self {
            num_codebooks,
            data: Vec::new(),
        }
    }

    /// Builds from columns (frames), each `num_codebooks` long.
    pub fn from_columns(num_codebooks: usize, cols: &[Vec<u32>]) -> Self {
        let t = cols.len();
        let mut data = vec![0u32; num_codebooks * t];
        for (j, c) in cols.iter().enumerate() {
            for (k, &v) in c.iter().take(num_codebooks).enumerate() {
                data[k * t + j] = v;
            }
        }
        Self {
            num_codebooks,
            data,
        }
    }

    pub fn frames(&self) -> usize {
        self.data.len().checked_div(self.num_codebooks).unwrap_or(0)
    }

    pub fn get(&self, k: usize, j: usize) -> u32 {
        self.data[k * self.frames() + j]
    }

    pub fn row(&self, k: usize) -> &[u32] {
        let t = self.frames();
        &self.data[k * t..(k + 1) * t]
    }

    pub fn column(&self, j: usize) -> Vec<u32> {
        (0..self.num_codebooks).map(|k| self.get(k, j)).collect()
    }

    /// Concatenates along time.
    pub fn concat(parts: &[Codes], num_codebooks: usize) -> Codes {
        let total: usize = parts.iter().map(Codes::frames).sum();
        let mut data = Vec::with_capacity(total * num_codebooks);
        for k in 0..num_codebooks {
            for p in parts {
                data.extend_from_slice(p.row(k));
            }
        }
        Codes {
            num_codebooks,
            data,
        }
    }
}

impl Codec {
    /// Decodes a whole code matrix in one call (the reference `HiggsAudioTokenizer.decode`).
    pub fn decode_codes(&self, codes: &Codes) -> Result<Vec<f32>> {
        if codes.num_codebooks != self.num_codebooks() {
            return Err(CodecError::Input(format!(
                "codes have {} codebooks, the codec has {}",
                codes.num_codebooks,
                self.num_codebooks()
            )));
        }
        let t = Tensor::from_vec(
            codes.data.clone(),
            (codes.num_codebooks, codes.frames()),
            self.device(),
        )?;
        self.decode(&t)
    }
}
