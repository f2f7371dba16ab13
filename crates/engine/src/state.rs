//! The per-sequence generation state machine of `HiggsAudioModel._sample` (reference spec §4):
//! TEXT / AUDIO_INIT / AUDIO_IN_PROGRESS, delay-pattern ramp-in and ramp-out (with the reference's
//! first-EOS-index quirk), RAS, stop strings and `max_new_tokens` counted as the reference counts
//! it (one per loop step). Pure logic over sampled ids: the caller runs the model and sampling.

use crate::delay::{finalize_segment, Codes};
use crate::sampling::{ras_count, RasParams};

/// Token ids and sizes the state machine needs (from the model config / tokenizer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialIds {
    pub audio_out_bos: u32,
    pub audio_out: u32,
    pub audio_eos: u32,
    /// Text ids that stop generation (`<|end_of_text|>`, `<|eot_id|>`, generation-config eos).
    pub stop: Vec<u32>,
    pub num_codebooks: usize,
    pub codebook_size: u32,
    pub stream_bos: u32,
    pub stream_eos: u32,
    pub use_delay_pattern: bool,
    /// The model has a text head. Without one (transformers' default checkpoint) there are no
    /// text logits: the state machine never asks for them, forces `<|audio_out_bos|>` where text
    /// would be sampled, and ends generation on the audio EOS instead of going back to text.
    pub text_head: bool,
}

/// Mode of the next forward, decided from the last token of the short text sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    AudioInit,
    AudioInProgress,
}

/// What the next forward of this sequence takes as input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextInput {
    Text(u32),
    Audio(Vec<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token (`<|eot_id|>` / `<|end_of_text|>`) was generated.
    Stop,
    /// `max_new_tokens` forward steps were run.
    Length,
}

/// What one step produced, for streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEvent {
    /// A text token appended to the short sequence (includes `<|audio_out_bos|>`,
    /// `<|AUDIO_OUT|>` once per segment, `<|audio_eos|>`, `<|eot_id|>`).
    Text(u32),
    /// A delayed audio column (the first one of a segment is all BOS).
    AudioColumn(Vec<u32>),
    /// The current audio segment ended (its last column was already reported).
    SegmentEnd,
}

#[derive(Debug, Clone)]
pub struct GenState {
    ids: SpecialIds,
    mode: Mode,
    num_delay: usize,
    num_remaining_delays: Option<usize>,
    /// Audio-out history for RAS, per codebook row: prompt audio-out columns then generated ones.
    history: Vec<Vec<u32>>,
    current: Vec<Vec<u32>>,
    segments: Vec<Codes>,
    text_tokens: Vec<u32>,
    steps: usize,
    max_new_tokens: usize,
    finished: Option<FinishReason>,
}

impl GenState {
    /// `prompt_last` is the last token of the (unexpanded) prompt; `prompt_audio_out` the delayed
    /// audio-out columns of the prompt in order (RAS history and continuation state).
    pub fn new(
        ids: SpecialIds,
        prompt_last: u32,
        prompt_audio_out: &[Vec<u32>],
        max_new_tokens: usize,
    ) -> Self {
        let n = ids.num_codebooks;
        let mut history = vec![Vec::new(); n];
        for col in prompt_audio_out {
            for (k, row) in history.iter_mut().enumerate() {
                row.push(col.get(k).copied().unwrap_or(ids.stream_bos));
            }
        }
        let mode = mode_for(&ids, prompt_last);
        let mut s = Self {
            mode,
            num_delay: 0,
            num_remaining_delays: None,
            history,
            current: Vec::new(),
            segments: Vec::new(),
            text_tokens: Vec::new(),
            steps: 0,
            max_new_tokens,
            finished: None,
            ids,
        };
        if mode == Mode::AudioInProgress {
            // Continuation: the prompt ends inside an audio segment; resume from its last column.
            if let Some(last) = prompt_audio_out.last() {
                let n_bos = last.iter().filter(|&&c| c == s.ids.stream_bos).count();
                s.num_delay = n.saturating_sub(n_bos);
                if let Some(e) = last.iter().position(|&c| c == s.ids.stream_eos) {
                    s.num_remaining_delays = Some(n - e - 1);
                }
            }
        }
        if max_new_tokens == 0 {
            s.finished = Some(FinishReason::Length);
        }
        s
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Which heads the next forward needs: (text, audio).
    pub fn needs_logits(&self) -> (bool, bool) {
        match self.mode {
            Mode::Text => (self.ids.text_head, false),
            Mode::AudioInit => (false, false),
            Mode::AudioInProgress => (false, true),
        }
    }

    pub fn finished(&self) -> Option<FinishReason> {
        self.finished
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn text_tokens(&self) -> &[u32] {
        &self.text_tokens
    }

    /// Completed delayed segments, plus the current one if generation stopped inside it.
    pub fn delayed_segments(&self) -> Vec<Codes> {
        let mut v = self.segments.clone();
        if !self.current.is_empty() {
            v.push(Codes::from_columns(self.ids.num_codebooks, &self.current));
        }
        v
    }

    /// Final codes of every segment (revert + clip + trim), as the reference returns them.
    pub fn final_segments(&self) -> Vec<Codes> {
        self.delayed_segments()
            .iter()
            .map(|d| finalize_segment(d, self.ids.codebook_size))
            .collect()
    }

    fn finish_step(&mut self, last_full_token: u32) {
        self.steps += 1;
        if self.ids.stop.contains(&last_full_token) {
            self.finished = Some(FinishReason::Stop);
        } else if self.steps >= self.max_new_tokens {
            self.finished = Some(FinishReason::Length);
        }
    }

    fn push_column(&mut self, col: Vec<u32>) {
        for (k, row) in self.history.iter_mut().enumerate() {
            row.push(col[k]);
        }
        self.current.push(col);
    }

    /// Advances after a TEXT or AUDIO_INIT forward. `sampled` is the sampled text id (ignored in
    /// AUDIO_INIT, whose output is forced, and without a text head, where TEXT is forced to
    /// `<|audio_out_bos|>`). Returns the events and the next input.
    pub fn on_text_step(&mut self, sampled: u32) -> (Vec<StepEvent>, NextInput) {
        let n = self.ids.num_codebooks;
        match self.mode {
            Mode::AudioInit => {
                let col = vec![self.ids.stream_bos; n];
                self.text_tokens.push(self.ids.audio_out);
                self.push_column(col.clone());
                self.mode = Mode::AudioInProgress;
                self.finish_step(self.ids.audio_out);
                (
                    vec![
                        StepEvent::Text(self.ids.audio_out),
                        StepEvent::AudioColumn(col.clone()),
                    ],
                    NextInput::Audio(col),
                )
            }
            _ => {
                // No text head: nothing was sampled; the only way on is into audio.
                let sampled = if self.ids.text_head {
                    sampled
                } else {
                    self.ids.audio_out_bos
                };
                self.text_tokens.push(sampled);
                self.mode = mode_for(&self.ids, sampled);
                self.finish_step(sampled);
                (vec![StepEvent::Text(sampled)], NextInput::Text(sampled))
            }
        }
    }

    /// RAS: indices of codebooks whose sampled code repeats too often in the recent history.
    pub fn ras_rows(&self, sampled: &[u32], ras: &RasParams) -> Vec<usize> {
        if !ras.enabled() {
            return Vec::new();
        }
        (0..self.ids.num_codebooks)
            .filter(|&k| ras_count(&self.history[k], ras.win_len, sampled[k]) >= ras.max_repeat)
            .collect()
    }

    /// Advances after an AUDIO_IN_PROGRESS forward with the sampled column (after RAS), applying
    /// the delay-pattern forcing of §4.2.
    pub fn on_audio_step(&mut self, sampled: &[u32]) -> (Vec<StepEvent>, NextInput) {
        let n = self.ids.num_codebooks;
        let (bos, eos) = (self.ids.stream_bos, self.ids.stream_eos);
        let mut x: Vec<u32> = sampled.to_vec();
        let mut end = false;
        if self.ids.use_delay_pattern {
            if self.num_delay + 1 < n {
                for v in &mut x[self.num_delay + 1..] {
                    *v = bos;
                }
                self.num_delay += 1;
            }
            match self.num_remaining_delays {
                Some(r) => {
                    for v in &mut x[..n - r] {
                        *v = eos;
                    }
                    self.num_remaining_delays = Some(r.saturating_sub(1));
                    end = r <= 1;
                }
                None => {
                    // The reference calls it "last_eos_idx" but takes the FIRST codebook with EOS.
                    if let Some(e) = x.iter().position(|&c| c == eos) {
                        for v in &mut x[..e] {
                            *v = eos;
                        }
                        let r = n - e - 1;
                        self.num_remaining_delays = Some(r);
                        end = r == 0;
                    }
                }
            }
        } else if x.contains(&eos) {
            end = true;
        }
        self.push_column(x.clone());
        let mut events = vec![StepEvent::AudioColumn(x.clone())];
        if end {
            let cols = std::mem::take(&mut self.current);
            self.segments.push(Codes::from_columns(n, &cols));
            self.num_delay = 0;
            self.num_remaining_delays = None;
            self.text_tokens.push(self.ids.audio_eos);
            self.mode = Mode::Text;
            events.push(StepEvent::SegmentEnd);
            events.push(StepEvent::Text(self.ids.audio_eos));
            self.finish_step(self.ids.audio_eos);
            if !self.ids.text_head {
                // The text after `<|audio_eos|>` cannot be sampled: the audio EOS is the stop
                // (as transformers' generate ends once every codebook is at the stream EOS).
                self.finished = Some(FinishReason::Stop);
            }
            (events, NextInput::Text(self.ids.audio_eos))
        } else {
            self.finish_step(self.ids.audio_out);
            (events, NextInput::Audio(x))
        }
    }

    /// The (num_delay, num_remaining_delays) pair, for tests against the reference's trace.
    pub fn delay_state(&self) -> (usize, Option<usize>) {
        (self.num_delay, self.num_remaining_delays)
    }
}

fn mode_for(ids: &SpecialIds, last: u32) -> Mode {
    if last == ids.audio_out_bos {
        Mode::AudioInit
    } else if last == ids.audio_out {
        Mode::AudioInProgress
    } else {
        Mode::Text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const N: usize = 4;
    const BOS: u32 = 1024;
    const EOS: u32 = 1025;

    fn ids() -> SpecialIds {
        SpecialIds {
            audio_out_bos: 13,
            audio_out: 16,
            audio_eos: 12,
            stop: vec![9, 1],
            num_codebooks: N,
            codebook_size: 1024,
            stream_bos: BOS,
            stream_eos: EOS,
            use_delay_pattern: true,
            text_head: true,
        }
    }

    /// Runs TEXT -> audio_out_bos -> AUDIO_INIT and returns the state in AUDIO_IN_PROGRESS.
    fn into_audio(max: usize) -> GenState {
        let mut s = GenState::new(ids(), 7, &[], max);
        assert_eq!(s.mode(), Mode::Text);
        s.on_text_step(13);
        assert_eq!(s.mode(), Mode::AudioInit);
        let (ev, next) = s.on_text_step(0);
        assert_eq!(ev[0], StepEvent::Text(16));
        assert_eq!(next, NextInput::Audio(vec![BOS; N]));
        assert_eq!(s.mode(), Mode::AudioInProgress);
        s
    }

    #[test]
    fn ramp_in_forces_bos_on_later_codebooks() {
        let mut s = into_audio(100);
        let (ev, _) = s.on_audio_step(&[5, 6, 7, 8]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![5, BOS, BOS, BOS]));
        let (ev, _) = s.on_audio_step(&[5, 6, 7, 8]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![5, 6, BOS, BOS]));
        let (ev, _) = s.on_audio_step(&[5, 6, 7, 8]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![5, 6, 7, BOS]));
        let (ev, _) = s.on_audio_step(&[5, 6, 7, 8]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![5, 6, 7, 8]));
        // An EOS sampled for a codebook still ramping is overwritten by BOS (no ramp-out).
        let mut s = into_audio(100);
        s.on_audio_step(&[5, EOS, 7, 8]);
        assert_eq!(s.delay_state(), (1, None));
    }

    fn ramp_done() -> GenState {
        let mut s = into_audio(100);
        for _ in 0..N {
            s.on_audio_step(&[1, 2, 3, 4]);
        }
        s
    }

    #[test]
    fn eos_first_on_a_later_codebook_uses_the_first_index() {
        let mut s = ramp_done();
        // EOS on codebooks 1 and 3: the reference takes the FIRST (1): codebook 0 forced to EOS,
        // remaining = N - 1 - 1 = 2.
        let (ev, _) = s.on_audio_step(&[9, EOS, 9, EOS]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![EOS, EOS, 9, EOS]));
        assert_eq!(s.delay_state().1, Some(2));
        let (ev, _) = s.on_audio_step(&[1, 2, 3, 4]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![EOS, EOS, 3, 4]));
        assert_eq!(s.mode(), Mode::AudioInProgress);
        let (ev, next) = s.on_audio_step(&[1, 2, 3, 4]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![EOS, EOS, EOS, 4]));
        assert!(ev.contains(&StepEvent::SegmentEnd));
        assert_eq!(next, NextInput::Text(12));
        assert_eq!(s.mode(), Mode::Text);
        assert_eq!(s.delay_state(), (0, None));
    }

    #[test]
    fn eos_on_the_last_codebook_ends_in_the_same_step() {
        let mut s = ramp_done();
        let (ev, next) = s.on_audio_step(&[1, 2, 3, EOS]);
        assert_eq!(ev[0], StepEvent::AudioColumn(vec![EOS, EOS, EOS, EOS]));
        assert_eq!(next, NextInput::Text(12));
    }

    #[test]
    fn text_after_audio_then_a_second_segment() {
        let mut s = ramp_done();
        s.on_audio_step(&[EOS, 2, 3, 4]);
        for _ in 0..N - 1 {
            s.on_audio_step(&[1, 2, 3, 4]);
        }
        assert_eq!(s.mode(), Mode::Text);
        s.on_text_step(500); // interleaved text
        assert!(s.finished().is_none());
        s.on_text_step(13); // <|audio_out_bos|> again
        s.on_text_step(0); // AUDIO_INIT
        s.on_audio_step(&[7, 7, 7, 7]);
        assert_eq!(s.delayed_segments().len(), 2);
        assert_eq!(s.text_tokens(), &[13, 16, 12, 500, 13, 16]);
    }

    #[test]
    fn max_new_tokens_inside_audio_keeps_the_partial_segment() {
        let mut s = into_audio(5); // 2 steps used
        for _ in 0..3 {
            assert!(s.finished().is_none());
            s.on_audio_step(&[3, 3, 3, 3]);
        }
        assert_eq!(s.finished(), Some(FinishReason::Length));
        assert_eq!(s.steps(), 5);
        let segs = s.delayed_segments();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].frames(), 4); // BOS column + 3 frames
                                         // revert (4 - N + 1 = 1 column) then trim both ends: nothing left, no panic.
        assert_eq!(s.final_segments()[0].frames(), 0);
    }

    fn no_head() -> SpecialIds {
        SpecialIds {
            text_head: false,
            ..ids()
        }
    }

    #[test]
    fn without_a_text_head_audio_eos_ends_generation_and_no_text_logits_are_asked() {
        // A prompt ending in <|audio_out_bos|> (force_audio).
        let mut s = GenState::new(no_head(), 13, &[], 100);
        let mut asked = vec![s.needs_logits()];
        s.on_text_step(0);
        asked.push(s.needs_logits());
        for _ in 0..N {
            s.on_audio_step(&[1, 2, 3, 4]);
            asked.push(s.needs_logits());
        }
        assert!(s.finished().is_none());
        let (ev, _) = s.on_audio_step(&[1, 2, 3, EOS]);
        asked.push(s.needs_logits());
        assert!(ev.contains(&StepEvent::SegmentEnd));
        assert_eq!(s.finished(), Some(FinishReason::Stop));
        assert_eq!(s.text_tokens(), &[16, 12]);
        assert!(asked.iter().all(|&(text, _)| !text), "{asked:?}");
        // With a text head the same audio EOS goes back to text mode and generation goes on.
        let mut s = ramp_done();
        s.on_audio_step(&[1, 2, 3, EOS]);
        assert!(s.finished().is_none());
        assert_eq!(s.needs_logits(), (true, false));
    }

    #[test]
    fn without_a_text_head_text_mode_is_forced_into_audio() {
        let mut s = GenState::new(no_head(), 7, &[], 100);
        assert_eq!(s.mode(), Mode::Text);
        assert_eq!(s.needs_logits(), (false, false));
        // Whatever the caller passes (nothing was sampled), the next token is <|audio_out_bos|>.
        let (ev, next) = s.on_text_step(500);
        assert_eq!(ev, vec![StepEvent::Text(13)]);
        assert_eq!(next, NextInput::Text(13));
        assert_eq!(s.mode(), Mode::AudioInit);
    }

    #[test]
    fn stop_token_finishes() {
        let mut s = GenState::new(ids(), 7, &[], 100);
        s.on_text_step(9);
        assert_eq!(s.finished(), Some(FinishReason::Stop));
    }

    #[test]
    fn ras_flags_only_repeated_codes() {
        let ras = RasParams {
            win_len: 3,
            max_repeat: 2,
        };
        let prompt = vec![vec![5, 6, 7, 8], vec![5, 1, 7, 2], vec![9, 1, 7, 3]];
        let mut s = GenState::new(ids(), 16, &prompt, 100);
        assert_eq!(s.mode(), Mode::AudioInProgress);
        // codebook 0: 5 twice in window -> flagged; codebook 1: 1 twice -> flagged;
        // codebook 2: 7 three times -> flagged; codebook 3: 4 never -> not.
        assert_eq!(s.ras_rows(&[5, 1, 7, 4], &ras), vec![0, 1, 2]);
        assert_eq!(s.ras_rows(&[0, 0, 0, 0], &ras), Vec::<usize>::new());
        assert!(s.ras_rows(&[5, 1, 7, 4], &RasParams::OFF).is_empty());
        // The window is the most recent columns only.
        s.on_audio_step(&[0, 0, 0, 0]);
        let narrow = RasParams {
            win_len: 1,
            max_repeat: 1,
        };
        assert_eq!(s.ras_rows(&[0, 0, 0, 0], &narrow).len(), N);
    }

    #[test]
    fn continuation_resumes_from_the_last_prompt_column() {
        let prompt = vec![vec![BOS; N], vec![3, BOS, BOS, BOS]];
        let s = GenState::new(ids(), 16, &prompt, 100);
        assert_eq!(s.delay_state(), (1, None));
        let prompt = vec![vec![EOS, 4, 4, 4]];
        let s = GenState::new(ids(), 16, &prompt, 100);
        assert_eq!(s.delay_state(), (N, Some(N - 1)));
    }
}
