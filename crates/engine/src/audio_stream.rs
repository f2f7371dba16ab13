//! Incremental audio for streaming: generated delay-pattern columns are de-delayed as they arrive
//! (the streaming form of `revert_delay_pattern` + clip + trim), and the resulting code frames are
//! decoded in windows with enough codec context that the concatenated chunks equal a one-shot
//! decode (see `higgs_codec::streaming`). Windows of several requests are decoded in one batched
//! codec call by the engine.

use crate::delay::Codes;

/// Turns one generated segment's delayed columns into final code frames, frame by frame.
///
/// Delayed column `c` completes reverted frame `c - (n - 1)`. Reverted frame 0 is the BOS frame
/// and the segment's last reverted frame is dropped, exactly as `finalize_segment` does; since a
/// frame is only known not to be the last once the next one exists, frames are released one
/// column late.
#[derive(Debug, Clone)]
pub struct SegmentDedelay {
    n: usize,
    codebook_size: u32,
    /// Delayed columns received so far (only the last `n` are needed).
    cols: Vec<Vec<u32>>,
    received: usize,
    /// Reverted frames completed but not yet released.
    pending: Option<Vec<u32>>,
    /// Reverted frames completed so far (including the BOS frame 0).
    completed: usize,
}

impl SegmentDedelay {
    pub fn new(num_codebooks: usize, codebook_size: u32) -> Self {
        Self {
            n: num_codebooks,
            codebook_size,
            cols: Vec::new(),
            received: 0,
            pending: None,
            completed: 0,
        }
    }

    /// Adds a delayed column; returns the final frames it releases (zero or one).
    pub fn push(&mut self, col: &[u32]) -> Vec<Vec<u32>> {
        self.cols.push(col.to_vec());
        if self.cols.len() > self.n {
            self.cols.remove(0);
        }
        self.received += 1;
        let mut out = Vec::new();
        if self.received >= self.n {
            // Reverted frame r = received - n: row k comes from delayed column r + k.
            let frame: Vec<u32> = (0..self.n)
                .map(|k| self.cols[k][k].min(self.codebook_size - 1))
                .collect();
            let r = self.completed;
            self.completed += 1;
            if let Some(prev) = self.pending.replace(frame) {
                // `prev` is reverted frame r - 1; frame 0 (BOS) is never released.
                if r >= 2 {
                    out.push(prev);
                }
            }
        }
        out
    }
    // At the end of the segment the pending frame is the last reverted frame: dropped.
}

/// Final code frames of one request waiting to be decoded, with the codec context bookkeeping of
/// `higgs_codec::StreamingDecoder`, split into "plan a window" and "accept its audio" so the
/// engine can batch windows across requests.
#[derive(Debug, Clone)]
pub struct AudioStream {
    n: usize,
    left_context: usize,
    right_context: usize,
    frames: Vec<Vec<u32>>,
    base: usize,
    emitted: usize,
    finished: bool,
}

/// A decode window: codes `[n, len]` (codebook-major), of which frames `left..left + n_new` are new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub codes: Codes,
    pub left: usize,
    pub n_new: usize,
    /// Absolute frame index of the first new frame.
    pub start_frame: usize,
}

impl AudioStream {
    pub fn new(num_codebooks: usize, left_context: usize, right_context: usize) -> Self {
        Self {
            n: num_codebooks,
            left_context,
            right_context,
            frames: Vec::new(),
            base: 0,
            emitted: 0,
            finished: false,
        }
    }

    pub fn push_frames(&mut self, frames: impl IntoIterator<Item = Vec<u32>>) {
        self.frames.extend(frames);
    }

    /// No more frames will come: the tail can be decoded without right context.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    pub fn frames_received(&self) -> usize {
        self.base + self.frames.len()
    }

    pub fn frames_emitted(&self) -> usize {
        self.emitted
    }

    /// Frames whose audio can be produced now.
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

    /// Records that the window's audio was produced; forgets frames no longer needed.
    pub fn accept(&mut self, w: &Window) {
        self.emitted = w.start_frame + w.n_new;
        let keep_from = self
            .emitted
            .saturating_sub(self.left_context)
            .max(self.base);
        self.frames.drain(..keep_from - self.base);
        self.base = keep_from;
    }

    pub fn is_done(&self) -> bool {
        self.finished && self.emitted == self.frames_received()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::delay::{build_delayed_segment, finalize_segment};

    #[test]
    fn streaming_dedelay_equals_finalize_segment() {
        let n = 4;
        for t in [0usize, 1, 2, 5, 13] {
            let data: Vec<u32> = (0..n * t).map(|i| (i * 37 % 1000) as u32).collect();
            let codes = Codes::new(n, data).unwrap();
            let delayed = build_delayed_segment(&codes, 1024, 1025);
            // Generated segments end on the eos column; drop the trailing all-EOS columns the
            // collator adds beyond it, keeping the layout the state machine produces.
            let mut d = SegmentDedelay::new(n, 1024);
            let mut got = Vec::new();
            for j in 0..delayed.frames() {
                got.extend(d.push(&delayed.column(j)));
            }
            let want = finalize_segment(&delayed, 1024);
            assert_eq!(Codes::from_columns(n, &got), want, "T = {t}");
        }
    }

    #[test]
    fn windows_cover_every_frame_once() {
        let mut s = AudioStream::new(2, 3, 3);
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
