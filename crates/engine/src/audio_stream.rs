//! Incremental audio for streaming: generated delay-pattern columns are de-delayed as they arrive
//! (the streaming form of `revert_delay_pattern` + clip + trim). The resulting code frames are
//! cut into decode windows by the codec's [`higgs_codec::WindowPlanner`] (re-exported here), and
//! windows of several requests are decoded in one batched codec call by the audio worker.

pub use higgs_codec::{Window, WindowPlanner};

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::delay::{build_delayed_segment, finalize_segment, Codes};

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
}
