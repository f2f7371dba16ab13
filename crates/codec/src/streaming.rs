//! Chunked (streaming) decode. The reference decodes in one call (`HiggsAudioTokenizer.decode`);
//! the vLLM fork decodes long outputs in chunks with overlapping context
//! (`xcodec_decode_chunk_by_chunk`). This module generalises that to frame-by-frame streaming.
//!
//! Every frame's audio depends on at most `R` frames on each side, `R` =
//! [`Codec::decoder_receptive_field_frames`] (11 for the real and tiny decoders: 3 frames from the
//! input conv, ~6.3 from the first up-block, the rest from later blocks; measured reach: 10). A frame is
//! emitted once `right_context` later frames are known, by decoding the window
//! `[left ctx | new frames | right ctx]` and cropping. With both contexts ≥ `R` the result equals
//! the one-shot decode up to float rounding (see `docs/codec.md` for the measured tolerance);
//! smaller contexts trade accuracy for latency.

use crate::error::{CodecError, Result};
use crate::higgs_audio_tokenizer::Codec;
use candle_core::{DType, Device, Tensor};

/// Maximum |chunked − one-shot| on the waveform that the tests guarantee when both contexts are
/// at least the receptive field (float32 rounding of differently sized convolutions).
pub const STREAMING_TOLERANCE: f32 = 1e-4;

/// Incremental decoder for one stream of code frames.
#[derive(Debug)]
pub struct StreamingDecoder<'a> {
    codec: &'a Codec,
    left_context: usize,
    right_context: usize,
    /// Buffered frames, each `n_q` codes; `frames[0]` is absolute frame `base`.
    frames: Vec<Vec<u32>>,
    base: usize,
    /// Absolute number of frames whose audio was already returned.
    emitted: usize,
}

impl<'a> StreamingDecoder<'a> {
    /// A decoder with left and right context equal to the decoder's receptive field, so the
    /// output matches one-shot decoding within [`STREAMING_TOLERANCE`].
    pub fn new(codec: &'a Codec) -> Self {
        let r = codec.decoder_receptive_field_frames();
        Self::with_context(codec, r, r)
    }

    /// A decoder with explicit contexts (frames). Right context is the latency in frames before
    /// a frame can be emitted; contexts below the receptive field give approximate audio.
    pub fn with_context(codec: &'a Codec, left_context: usize, right_context: usize) -> Self {
        Self {
            codec,
            left_context,
            right_context,
            frames: Vec::new(),
            base: 0,
            emitted: 0,
        }
    }

    pub fn left_context(&self) -> usize {
        self.left_context
    }

    pub fn right_context(&self) -> usize {
        self.right_context
    }

    /// Frames received so far.
    pub fn frames_received(&self) -> usize {
        self.base + self.frames.len()
    }

    /// Frames whose audio has been returned so far.
    pub fn frames_emitted(&self) -> usize {
        self.emitted
    }

    /// Adds code frames `[n_q, n]` (any integer dtype, any device) and returns the audio of every
    /// frame that now has its full right context (possibly empty).
    pub fn push(&mut self, codes: &Tensor) -> Result<Vec<f32>> {
        let (n_q, n) = codes.dims2()?;
        if n_q != self.codec.num_codebooks() {
            return Err(CodecError::Input(format!(
                "chunk has {n_q} codebooks, the codec has {}",
                self.codec.num_codebooks()
            )));
        }
        if codes.dtype().is_float() {
            return Err(CodecError::Input("codes must be integers".into()));
        }
        let host: Vec<Vec<i64>> = codes.to_dtype(DType::I64)?.t()?.to_vec2()?;
        let size = self.codec.codebook_size() as i64;
        for frame in host {
            if let Some(bad) = frame.iter().find(|c| **c < 0 || **c >= size) {
                return Err(CodecError::Input(format!("code {bad} outside [0, {size})")));
            }
            self.frames
                .push(frame.into_iter().map(|c| c as u32).collect());
        }
        debug_assert!(n == 0 || !self.frames.is_empty());
        let ready = self.frames_received().saturating_sub(self.right_context);
        self.emit_until(ready)
    }

    /// Ends the stream: returns the audio of all frames not yet emitted (the end of the stream
    /// is treated exactly like the end of a one-shot decode).
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        let total = self.frames_received();
        self.emit_until(total)
    }

    fn emit_until(&mut self, end: usize) -> Result<Vec<f32>> {
        if end <= self.emitted {
            return Ok(Vec::new());
        }
        let total = self.frames_received();
        let start = self.emitted;
        let win_start = start.saturating_sub(self.left_context).max(self.base);
        let win_end = (end + self.right_context).min(total);
        let (window, left, n_new) = (win_start..win_end, start - win_start, end - start);
        let n_q = self.codec.num_codebooks();
        let mut flat = Vec::with_capacity(n_q * window.len());
        for q in 0..n_q {
            for f in window.clone() {
                flat.push(self.frames[f - self.base][q]);
            }
        }
        let codes = Tensor::from_vec(flat, (1, n_q, window.len()), &Device::Cpu)?;
        let wav = self.codec.decode_window(&codes, left, n_new)?;
        let out = wav.squeeze(0)?.to_vec1::<f32>()?;
        self.emitted = end;
        // Keep only what later windows can still need as left context.
        let keep_from = end.saturating_sub(self.left_context).max(self.base);
        self.frames.drain(..keep_from - self.base);
        self.base = keep_from;
        Ok(out)
    }
}
