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

use crate::codes::Codes;
use crate::error::{CodecError, Result};
use crate::higgs_audio_tokenizer::Codec;
use candle_core::{DType, Device, Tensor};

/// Maximum |chunked − one-shot| on the waveform that the tests guarantee when both contexts are
/// at least the receptive field (float32 rounding of differently sized convolutions).
pub const STREAMING_TOLERANCE: f32 = 1e-4;

/// A decode window: codes `[n, len]` (codebook-major), of which frames `left..left + n_new` are
/// new; the others are context, decoded and cropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub codes: Codes,
    pub left: usize,
    pub n_new: usize,
    /// Absolute frame index of the first new frame.
    pub start_frame: usize,
}

/// Which frames of one stream to decode next and with what context — the bookkeeping of
/// streaming decode without the codec, split into "plan a window" and "accept its audio" so that
/// a caller (the serving engine) can decode windows of many streams in one batched call.
#[derive(Debug, Clone)]
pub struct WindowPlanner {
    n: usize,
    left_context: usize,
    right_context: usize,
    /// Buffered frames, each `n` codes; `frames[0]` is absolute frame `base`.
    frames: Vec<Vec<u32>>,
    base: usize,
    /// Absolute number of frames whose audio was already produced.
    emitted: usize,
    /// Layer-wise streaming ([`WindowPlanner::next_step`]): frames already fed to the stream's
    /// decoder state.
    fed: usize,
    finished: bool,
}

/// One layer-wise streaming step of one stream ([`Codec::decode_step`]): the frames its decoder
/// state has not seen yet, up to the right context of the frames the step lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Frames `first_frame..first_frame + n_real`, then, when the step ends the stream,
    /// [`Codec::step_flush_frames`] frames of padding (codebook-major).
    pub codes: Codes,
    pub first_frame: usize,
    pub n_real: usize,
    /// The stream's length, when this step ends it.
    pub total_frames: Option<usize>,
    /// Frames whose audio is complete after this step (the engine's chunk bookkeeping).
    pub emit_end: usize,
}

impl WindowPlanner {
    pub fn new(num_codebooks: usize, left_context: usize, right_context: usize) -> Self {
        Self {
            n: num_codebooks,
            left_context,
            right_context,
            frames: Vec::new(),
            base: 0,
            emitted: 0,
            fed: 0,
            finished: false,
        }
    }

    pub fn left_context(&self) -> usize {
        self.left_context
    }

    pub fn right_context(&self) -> usize {
        self.right_context
    }

    pub fn push_frames(&mut self, frames: impl IntoIterator<Item = Vec<u32>>) {
        self.frames.extend(frames);
    }

    /// No more frames will come: the tail can be decoded without right context.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Frames received so far.
    pub fn frames_received(&self) -> usize {
        self.base + self.frames.len()
    }

    /// Frames whose audio has been produced so far.
    pub fn frames_emitted(&self) -> usize {
        self.emitted
    }

    /// Frames whose audio can be produced now (those with their full right context, or all once
    /// finished).
    pub fn ready(&self) -> usize {
        let total = self.frames_received();
        let end = if self.finished {
            total
        } else {
            total.saturating_sub(self.right_context)
        };
        end.saturating_sub(self.emitted)
    }

    /// The window that decodes the next `min(ready, max_new)` frames, if at least `min_new` are
    /// ready (or the stream is finished and anything is left).
    pub fn next_window(&self, min_new: usize, max_new: usize) -> Option<Window> {
        let ready = self.ready();
        if ready == 0 || (ready < min_new && !self.finished) {
            return None;
        }
        let n_new = ready.min(max_new.max(1));
        let start = self.emitted;
        let end = start + n_new;
        let total = self.frames_received();
        let win_start = start.saturating_sub(self.left_context).max(self.base);
        let win_end = (end + self.right_context).min(total);
        let mut data = Vec::with_capacity(self.n * (win_end - win_start));
        for k in 0..self.n {
            for f in win_start..win_end {
                data.push(self.frames[f - self.base][k]);
            }
        }
        Some(Window {
            codes: Codes {
                num_codebooks: self.n,
                data,
            },
            left: start - win_start,
            n_new,
            start_frame: start,
        })
    }

    /// The layer-wise streaming step that lets out the frames [`Self::next_window`] would (same
    /// readiness and chunking, plan with no left context; a finished stream's whole tail at
    /// once): it feeds every frame not fed yet up to that window's end (so each step has new
    /// frames), plus `flush_frames` frames of padding when it ends the stream.
    pub fn next_step(&self, min_new: usize, max_new: usize, flush_frames: usize) -> Option<Step> {
        // Once the stream is finished its whole tail goes in one step (with the flush): a later
        // chunk would find its frames already fed by this one's right context.
        let max_new = if self.finished { usize::MAX } else { max_new };
        let w = self.next_window(min_new, max_new)?;
        let emit_end = w.start_frame + w.n_new;
        let total = self.frames_received();
        let win_end = (emit_end + self.right_context).min(total);
        let last = self.finished && emit_end == total;
        let first = self.fed.max(self.base);
        let n_real = win_end.saturating_sub(first);
        let pad = if last { flush_frames } else { 0 };
        let mut data = Vec::with_capacity(self.n * (n_real + pad));
        for k in 0..self.n {
            for f in first..first + n_real {
                data.push(self.frames[f - self.base][k]);
            }
            // Padding frames are masked to zeros by the decoder: any valid code does.
            data.extend(std::iter::repeat_n(0, pad));
        }
        Some(Step {
            codes: Codes {
                num_codebooks: self.n,
                data,
            },
            first_frame: first,
            n_real,
            total_frames: last.then_some(total),
            emit_end,
        })
    }

    /// Records that the step was queued (its frames are in the decoder state, its audio is on
    /// the way).
    pub fn accept_step(&mut self, s: &Step) {
        self.fed = s.first_frame + s.n_real;
        self.emitted = s.emit_end;
        // `next_window` (under `next_step`) reads from the first frame not let out on.
        let keep_from = self.emitted.max(self.base);
        self.frames.drain(..keep_from - self.base);
        self.base = keep_from;
    }

    /// Records that the window's audio was produced; forgets frames no later window needs.
    pub fn accept(&mut self, w: &Window) {
        self.emitted = w.start_frame + w.n_new;
        let keep_from = self
            .emitted
            .saturating_sub(self.left_context)
            .max(self.base);
        self.frames.drain(..keep_from - self.base);
        self.base = keep_from;
    }

    /// Finished and every frame's audio produced.
    pub fn is_done(&self) -> bool {
        self.finished && self.emitted == self.frames_received()
    }
}

/// Turns a stream's [`Codec::decode_step`] outputs into audio of whole frames: a step's samples
/// lag its frames by [`Codec::step_delay_samples`], which is not a whole number of frames, so the
/// samples past the last complete frame wait for the next step.
#[derive(Debug, Clone, Default)]
pub struct StepAudio {
    /// Samples decoded past the last frame let out.
    pending: Vec<f32>,
    /// Frames let out so far.
    emitted: usize,
}

impl StepAudio {
    /// Takes the samples of `step` (as [`Codec::decode_step`] returned them for this stream)
    /// and returns the frames now complete: `(first frame, samples)`, or `None` if none is.
    pub fn push(
        &mut self,
        step: &Step,
        samples: &[f32],
        hop: usize,
        delay: usize,
    ) -> Option<(usize, Vec<f32>)> {
        // Stream sample of samples[0]; steps follow each other, so after the start this is
        // exactly where the previous step's samples ended.
        let skip = delay
            .saturating_sub(step.first_frame * hop)
            .min(samples.len());
        let mut have = self.emitted * hop + self.pending.len();
        let mut take = &samples[skip..];
        if let Some(total) = step.total_frames {
            take = &take[..take.len().min((total * hop).saturating_sub(have))];
        }
        self.pending.extend_from_slice(take);
        have += take.len();
        let ready = match step.total_frames {
            Some(total) => total,
            None => have / hop,
        };
        if ready <= self.emitted {
            return None;
        }
        let n = ((ready - self.emitted) * hop).min(self.pending.len());
        let out: Vec<f32> = self.pending.drain(..n).collect();
        let first = self.emitted;
        self.emitted = ready;
        Some((first, out))
    }

    /// Frames let out so far.
    pub fn frames_emitted(&self) -> usize {
        self.emitted
    }
}

/// Incremental decoder for one stream of code frames.
#[derive(Debug)]
pub struct StreamingDecoder<'a> {
    codec: &'a Codec,
    plan: WindowPlanner,
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
            plan: WindowPlanner::new(codec.num_codebooks(), left_context, right_context),
        }
    }

    pub fn left_context(&self) -> usize {
        self.plan.left_context()
    }

    pub fn right_context(&self) -> usize {
        self.plan.right_context()
    }

    /// Frames received so far.
    pub fn frames_received(&self) -> usize {
        self.plan.frames_received()
    }

    /// Frames whose audio has been returned so far.
    pub fn frames_emitted(&self) -> usize {
        self.plan.frames_emitted()
    }

    /// Adds code frames `[n_q, n]` (any integer dtype, any device) and returns the audio of every
    /// frame that now has its full right context (possibly empty).
    pub fn push(&mut self, codes: &Tensor) -> Result<Vec<f32>> {
        let (n_q, _) = codes.dims2()?;
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
            self.plan
                .push_frames([frame.into_iter().map(|c| c as u32).collect()]);
        }
        self.emit()
    }

    /// Ends the stream: returns the audio of all frames not yet emitted (the end of the stream
    /// is treated exactly like the end of a one-shot decode).
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        self.plan.finish();
        self.emit()
    }

    /// Decodes every ready frame in one window.
    fn emit(&mut self) -> Result<Vec<f32>> {
        let Some(w) = self.plan.next_window(1, usize::MAX) else {
            return Ok(Vec::new());
        };
        let len = w.codes.frames();
        let codes = Tensor::from_vec(
            w.codes.data.clone(),
            (1, w.codes.num_codebooks, len),
            &Device::Cpu,
        )?;
        let wav = self.codec.decode_window(&codes, w.left, w.n_new)?;
        let out = wav.squeeze(0)?.to_vec1::<f32>()?;
        self.plan.accept(&w);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_frame_once() {
        let mut s = WindowPlanner::new(2, 3, 3);
        let mut covered = Vec::new();
        for f in 0..20u32 {
            s.push_frames([vec![f, f]]);
            while let Some(w) = s.next_window(2, 5) {
                assert!(w.left <= 3);
                let len = w.codes.frames();
                assert!(len >= w.left + w.n_new);
                covered.extend(w.start_frame..w.start_frame + w.n_new);
                s.accept(&w);
            }
        }
        s.finish();
        while let Some(w) = s.next_window(2, 5) {
            covered.extend(w.start_frame..w.start_frame + w.n_new);
            s.accept(&w);
        }
        assert!(s.is_done());
        assert_eq!(covered, (0..20).collect::<Vec<_>>());
    }
}
