//! Pitch-preserving tempo change of mono speech: WSOLA (waveform-similarity overlap-add, the
//! algorithm of SoundTouch), one-shot ([`time_stretch`]) and streaming ([`TimeStretch`]).
//!
//! # Why this is hand-written
//! OpenAI's `speed` (0.25–4.0) needs a time stretch that keeps the pitch, runs on a 24 kHz
//! stream as it is generated, and builds fast on a 2-core CI machine. The crates evaluated in
//! `docs/server.md` ("`speed` and `aac`") do not fit: SoundTouch and Rubber Band bindings are
//! LGPL/GPL, `tdpsola` is AGPL, `timestretch` refuses rates below 32 kHz and breaks its API with
//! every release, and the Signalsmith Stretch bindings bring `bindgen`/`cxx` and a C++ build.
//! WSOLA for speech is ~190 lines of plain time-domain code with no dependency, so it lives here,
//! with its tests beside it.
//!
//! # Algorithm
//! The output is a sequence of segments of `frame` input samples (40 ms), each placed `hop_out =
//! frame - overlap` output samples after the previous one; consecutive segments overlap by
//! `overlap` samples (10 ms) and are cross-faded there with complementary raised-cosine weights
//! (`w_in + w_out = 1`, so the fade never adds gain). Segment `k` is taken near its nominal input
//! position `round(k * hop_in)`, `hop_in = hop_out * speed`: within ±`search` samples (12 ms) of
//! it, at the start whose first `overlap` samples best match (normalised cross-correlation) the
//! previous segment's last `overlap` samples, i.e. what that segment would have continued with.
//! The splice is then in phase, and the pitch stays that of the input while the duration becomes
//! `input / speed`: the output has exactly `round(n / speed)` samples.
//!
//! # Streaming
//! A segment is cut only once every candidate start and its whole frame (and one input hop more,
//! so that nothing is sent past the final length) are in the buffer, so each decision sees the
//! same samples however the input was split: [`TimeStretch::push`] then [`TimeStretch::finish`]
//! gives bit for bit what [`time_stretch`] gives (test: `streaming_equals_one_shot_for_any_split`).
//! `finish` reads silence past the end of the input to fill the last segments, then cuts the
//! output to its length. Latency: `frame + search` input samples (52 ms at 24 kHz), or one input
//! hop at high speeds (120 ms of input at 4×).

use std::f64::consts::PI;

use crate::error::{AudioError, Result};

/// Slowest tempo accepted (OpenAI's `speed` range).
pub const MIN_SPEED: f32 = 0.25;
/// Fastest tempo accepted.
pub const MAX_SPEED: f32 = 4.0;

/// Segment length, seconds.
const FRAME_S: f64 = 0.040;
/// Cross-fade between segments, seconds.
const OVERLAP_S: f64 = 0.010;
/// How far from its nominal position a segment may start, either way, seconds.
const SEARCH_S: f64 = 0.012;

/// A streaming pitch-preserving tempo change: `speed` 2 plays twice as fast (half the samples),
/// 0.5 half as fast. Speed 1 passes the input through untouched.
#[derive(Debug, Clone)]
pub struct TimeStretch {
    /// `None`: speed 1, the identity.
    wsola: Option<Wsola>,
}

impl TimeStretch {
    /// A stretcher for mono audio at `sample_rate`; `speed` must be in [0.25, 4.0].
    pub fn new(speed: f32, sample_rate: u32) -> Result<Self> {
        if !speed.is_finite() || !(MIN_SPEED..=MAX_SPEED).contains(&speed) {
            return Err(AudioError::InvalidSpeed { speed });
        }
        if sample_rate == 0 {
            return Err(AudioError::InvalidSampleRate {
                rate: sample_rate,
                why: "a sample rate must be positive",
            });
        }
        let wsola = (speed != 1.0).then(|| Wsola::new(f64::from(speed), sample_rate));
        Ok(Self { wsola })
    }

    /// Whether this stretcher changes anything (speed ≠ 1).
    pub fn is_identity(&self) -> bool {
        self.wsola.is_none()
    }

    /// Takes the next input samples and returns the output that is final now (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        match &mut self.wsola {
            None => samples.to_vec(),
            Some(w) => w.push(samples),
        }
    }

    /// Ends the input and returns the rest of the output.
    pub fn finish(self) -> Vec<f32> {
        match self.wsola {
            None => Vec::new(),
            Some(w) => w.finish(),
        }
    }
}

/// `samples` played at `speed` with the pitch kept: exactly `round(len / speed)` samples; speed 1
/// returns the input unchanged. The same as one [`TimeStretch::push`] of everything and
/// [`TimeStretch::finish`].
pub fn time_stretch(samples: &[f32], speed: f32, sample_rate: u32) -> Result<Vec<f32>> {
    let mut t = TimeStretch::new(speed, sample_rate)?;
    let mut out = t.push(samples);
    out.extend(t.finish());
    Ok(out)
}

#[derive(Debug, Clone)]
struct Wsola {
    speed: f64,
    /// Segment length `N`.
    frame: usize,
    /// Cross-fade length `L` (< N / 2).
    overlap: usize,
    /// Search half-width `S`.
    search: usize,
    /// Output samples per segment, `N - L`.
    hop_out: usize,
    /// Input samples per segment, `hop_out * speed`.
    hop_in: f64,
    /// Input needed past a segment's nominal start before it is cut while streaming.
    lookahead: usize,
    fade_in: Vec<f32>,
    fade_out: Vec<f32>,
    /// Input from absolute position `buf_start` on.
    buf: Vec<f32>,
    buf_start: usize,
    /// Input samples pushed so far.
    received: usize,
    /// The next segment's index.
    k: usize,
    /// The last `L` samples of the previous segment (what the output fades out of); empty
    /// before the first segment.
    tail: Vec<f32>,
    /// Output samples produced so far (the tail not counted).
    emitted: usize,
}

impl Wsola {
    fn new(speed: f64, rate: u32) -> Self {
        let at = |s: f64| (s * f64::from(rate)).round() as usize;
        let overlap = at(OVERLAP_S).max(1);
        let frame = at(FRAME_S).max(2 * overlap + 1);
        let search = at(SEARCH_S).max(1);
        let hop_out = frame - overlap;
        let hop_in = hop_out as f64 * speed;
        let lookahead = (search + frame).max(hop_in.ceil() as usize + 1) + 1;
        // Raised-cosine fades at the sample centres: w_in = sin², w_out = cos², summing to 1.
        let fade_in: Vec<f32> = (0..overlap)
            .map(|i| {
                let s = (PI * (i as f64 + 0.5) / (2.0 * overlap as f64)).sin();
                (s * s) as f32
            })
            .collect();
        let fade_out = fade_in.iter().rev().copied().collect();
        Self {
            speed,
            frame,
            overlap,
            search,
            hop_out,
            hop_in,
            lookahead,
            fade_in,
            fade_out,
            buf: Vec::new(),
            buf_start: 0,
            received: 0,
            k: 0,
            tail: Vec::new(),
            emitted: 0,
        }
    }

    /// Nominal input position of segment `k`.
    fn nominal(&self, k: usize) -> usize {
        (k as f64 * self.hop_in).round() as usize
    }

    fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        self.buf.extend_from_slice(samples);
        self.received += samples.len();
        let mut out = Vec::new();
        while self.nominal(self.k) + self.lookahead <= self.received {
            self.segment(&mut out);
        }
        out
    }

    fn finish(mut self) -> Vec<f32> {
        let target = (self.received as f64 / self.speed).round() as usize;
        debug_assert!(self.emitted <= target, "streaming sent past the end");
        let mut out = Vec::new();
        while self.emitted < target {
            // Silence past the end of the input.
            let need = self.nominal(self.k) + self.search + self.frame;
            if self.buf_start + self.buf.len() < need {
                self.buf.resize(need - self.buf_start, 0.0);
            }
            self.segment(&mut out);
        }
        let extra = self.emitted.saturating_sub(target).min(out.len());
        out.truncate(out.len() - extra);
        out
    }

    /// Cuts segment `k` (its input must be buffered up to `nominal + search + frame`) and appends
    /// `hop_out` output samples.
    fn segment(&mut self, out: &mut Vec<f32>) {
        let a = self.nominal(self.k);
        let start = if self.tail.is_empty() {
            a
        } else {
            self.best_start(a)
        };
        let i0 = start - self.buf_start;
        let seg = &self.buf[i0..i0 + self.frame];
        let l = self.overlap;
        if self.tail.is_empty() {
            out.extend_from_slice(&seg[..l]);
        } else {
            out.extend((0..l).map(|i| self.tail[i] * self.fade_out[i] + seg[i] * self.fade_in[i]));
        }
        out.extend_from_slice(&seg[l..self.hop_out]);
        self.tail.clear();
        self.tail.extend_from_slice(&seg[self.hop_out..]);
        self.emitted += self.hop_out;
        self.k += 1;
        // The next segment looks no earlier than its nominal start minus the search.
        let keep = self
            .nominal(self.k)
            .saturating_sub(self.search)
            .clamp(self.buf_start, self.buf_start + self.buf.len());
        self.buf.drain(..keep - self.buf_start);
        self.buf_start = keep;
    }

    /// The start within ±`search` of `a` whose first `overlap` samples correlate best with the
    /// tail (normalised by the candidate's energy). Ties, e.g. in silence, go to the candidate
    /// nearest `a`.
    fn best_start(&self, a: usize) -> usize {
        let lo = a.saturating_sub(self.search).max(self.buf_start);
        let hi = a + self.search;
        let score = |p: usize| -> f32 {
            let c = &self.buf[p - self.buf_start..p - self.buf_start + self.overlap];
            let (mut dot, mut energy) = (0.0f32, 0.0f32);
            for (t, x) in self.tail.iter().zip(c) {
                dot += t * x;
                energy += x * x;
            }
            if energy > 1e-12 {
                dot / energy.sqrt()
            } else {
                0.0
            }
        };
        let (mut best, mut best_score) = (a, score(a));
        for d in 1..=self.search {
            for p in [a.checked_sub(d), Some(a + d)].into_iter().flatten() {
                if p < lo || p > hi {
                    continue;
                }
                let s = score(p);
                if s > best_score {
                    (best, best_score) = (p, s);
                }
            }
        }
        best
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RATE: u32 = 24_000;

    fn sine(freq: f64, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * PI * freq * i as f64 / f64::from(RATE)).sin() as f32)
            .collect()
    }

    /// A deterministic noise-like signal (xorshift), for tests that need no structure.
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Frequency from the rising zero crossings (linearly interpolated) between 0.1 s and 0.1 s
    /// before the end.
    fn zero_crossing_freq(x: &[f32]) -> f64 {
        let skip = RATE as usize / 10;
        let mut crossings = Vec::new();
        for i in skip..x.len() - skip {
            let (a, b) = (x[i - 1], x[i]);
            if a < 0.0 && b >= 0.0 {
                crossings.push((i - 1) as f64 + f64::from(a / (a - b)));
            }
        }
        let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
        (crossings.len() - 1) as f64 / (last - first) * f64::from(RATE)
    }

    /// Fundamental from the highest normalised autocorrelation peak at lags of 60–500 Hz, over
    /// the middle of `x` (no FFT).
    fn autocorr_freq(x: &[f32]) -> f64 {
        let mid = x.len() / 2;
        let w = 2400.min(mid / 2);
        let seg = &x[mid - w..mid + w];
        let (min_lag, max_lag) = ((RATE / 500) as usize, (RATE / 60) as usize);
        let n = seg.len() - max_lag;
        let r = |lag: usize| -> f64 {
            let (mut d, mut e0, mut e1) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..n {
                d += f64::from(seg[i]) * f64::from(seg[i + lag]);
                e0 += f64::from(seg[i]).powi(2);
                e1 += f64::from(seg[i + lag]).powi(2);
            }
            d / (e0 * e1).sqrt().max(1e-12)
        };
        let rs: Vec<f64> = (min_lag..=max_lag).map(r).collect();
        let (best, _) =
            rs.iter()
                .enumerate()
                .skip(1)
                .take(rs.len() - 2)
                .fold(
                    (0, f64::MIN),
                    |acc, (i, &v)| {
                        if v > acc.1 {
                            (i, v)
                        } else {
                            acc
                        }
                    },
                );
        // Parabolic interpolation of the peak.
        let (y0, y1, y2) = (rs[best - 1], rs[best], rs[best + 1]);
        let shift = 0.5 * (y0 - y2) / (y0 - 2.0 * y1 + y2);
        f64::from(RATE) / ((min_lag + best) as f64 + shift)
    }

    fn peak(x: &[f32]) -> f32 {
        x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    #[test]
    fn speed_and_rate_are_validated() {
        for bad in [0.0, 0.24, 4.01, -1.0, f32::NAN, f32::INFINITY] {
            let e = TimeStretch::new(bad, RATE).unwrap_err();
            assert!(matches!(e, AudioError::InvalidSpeed { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("[0.25, 4.0]"), "{e}");
            assert!(e.is_input_error());
        }
        for ok in [0.25, 0.5, 1.0, 1.5, 4.0] {
            TimeStretch::new(ok, RATE).unwrap();
        }
        assert!(matches!(
            TimeStretch::new(2.0, 0).unwrap_err(),
            AudioError::InvalidSampleRate { .. }
        ));
    }

    #[test]
    fn speed_one_is_the_identity() {
        let x = noise(10_000, 7);
        assert!(TimeStretch::new(1.0, RATE).unwrap().is_identity());
        assert!(!TimeStretch::new(1.01, RATE).unwrap().is_identity());
        let y = time_stretch(&x, 1.0, RATE).unwrap();
        assert_eq!(
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let mut t = TimeStretch::new(1.0, RATE).unwrap();
        assert_eq!(t.push(&x[..123]), &x[..123]);
        assert_eq!(t.push(&x[123..]), &x[123..]);
        assert!(t.finish().is_empty());
    }

    #[test]
    fn output_length_is_input_over_speed() {
        let frame = FRAME_S * f64::from(RATE);
        for n in [24_000usize, 37_123] {
            let x = sine(220.0, 0.5, n);
            for speed in [0.25f32, 0.5, 0.75, 1.5, 2.0, 3.0, 4.0] {
                let y = time_stretch(&x, speed, RATE).unwrap();
                let want = n as f64 / f64::from(speed);
                let got = y.len() as f64;
                assert!(
                    (got - want).abs() <= frame,
                    "n {n} speed {speed}: {got} samples, want {want} within one frame"
                );
                // In fact exact: round(n / speed).
                assert_eq!(y.len(), want.round() as usize, "n {n} speed {speed}");
            }
        }
    }

    #[test]
    fn a_sine_keeps_its_pitch() {
        let x = sine(220.0, 0.8, 2 * RATE as usize);
        let f_in = zero_crossing_freq(&x);
        assert!((f_in - 220.0).abs() < 0.1, "estimator: {f_in}");
        for speed in [0.5f32, 0.75, 1.5, 2.0] {
            let y = time_stretch(&x, speed, RATE).unwrap();
            let zc = zero_crossing_freq(&y);
            let ac = autocorr_freq(&y);
            eprintln!("sine 220 Hz at speed {speed}: {zc:.3} Hz (zero crossings), {ac:.3} Hz (autocorrelation), {} -> {} samples", x.len(), y.len());
            for (how, f) in [("zero crossings", zc), ("autocorrelation", ac)] {
                assert!(
                    (f / 220.0 - 1.0).abs() < 0.02,
                    "speed {speed}: {f:.2} Hz by {how}, want 220 Hz ± 2 %"
                );
            }
        }
    }

    /// A voice-like harmonic signal (a 150 Hz fundamental with 12 falling harmonics) keeps its
    /// fundamental; a plain resampler would move it to 150 × speed.
    #[test]
    fn a_harmonic_signal_keeps_its_fundamental() {
        let n = 2 * RATE as usize;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                (1..=12)
                    .map(|h| (2.0 * PI * 150.0 * h as f64 * t).sin() / h as f64)
                    .sum::<f64>() as f32
                    * 0.3
            })
            .collect();
        let f_in = autocorr_freq(&x);
        assert!((f_in / 150.0 - 1.0).abs() < 0.005, "estimator: {f_in}");
        for speed in [0.5f32, 2.0, 4.0] {
            let y = time_stretch(&x, speed, RATE).unwrap();
            let f = autocorr_freq(&y);
            eprintln!("harmonic 150 Hz at speed {speed}: {f:.3} Hz");
            assert!(
                (f / 150.0 - 1.0).abs() < 0.02,
                "speed {speed}: {f:.2} Hz, want 150 Hz ± 2 %"
            );
        }
    }

    #[test]
    fn amplitude_stays_bounded_and_finite() {
        let x = sine(220.0, 0.9, RATE as usize);
        let p_in = peak(&x);
        for speed in [0.25f32, 0.5, 0.8, 1.25, 2.0, 4.0] {
            let y = time_stretch(&x, speed, RATE).unwrap();
            assert!(y.iter().all(|v| v.is_finite()), "speed {speed}");
            let p = peak(&y);
            eprintln!("sine peak {p_in} at speed {speed}: peak {p}");
            assert!(p <= p_in * 1.05, "speed {speed}: peak {p} > {p_in} × 1.05");
            // And the level is kept: no fade dips (RMS within 5 % of the input's).
            let rms = |v: &[f32]| (v.iter().map(|s| s * s).sum::<f32>() / v.len() as f32).sqrt();
            let (r_in, r) = (rms(&x), rms(&y[240..y.len() - 240]));
            assert!(
                (r / r_in - 1.0).abs() < 0.05,
                "speed {speed}: rms {r} vs {r_in}"
            );
        }
        // Full-scale noise and silence stay finite and bounded too.
        let x = noise(30_000, 3);
        for speed in [0.25f32, 3.0] {
            let y = time_stretch(&x, speed, RATE).unwrap();
            assert!(y.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        }
        let y = time_stretch(&[0.0; 10_000], 0.5, RATE).unwrap();
        assert!(y.len() == 20_000 && y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for speed in [0.25f32, 0.5, 1.5, 4.0] {
            assert!(time_stretch(&[], speed, RATE).unwrap().is_empty());
            let t = TimeStretch::new(speed, RATE).unwrap();
            assert!(t.finish().is_empty());
            for n in [1usize, 2, 3, 100, 959, 960, 961, 2000] {
                let x = sine(300.0, 0.5, n);
                let y = time_stretch(&x, speed, RATE).unwrap();
                assert_eq!(y.len(), (n as f64 / f64::from(speed)).round() as usize);
                assert!(y.iter().all(|v| v.is_finite() && v.abs() <= 0.5 * 1.05));
            }
        }
        // Other rates work (parameters scale; tiny rates keep the minimum sizes).
        for rate in [8_000u32, 16_000, 44_100, 48_000, 100, 1] {
            let x = noise(5_000, 9);
            let y = time_stretch(&x, 2.0, rate).unwrap();
            assert_eq!(y.len(), 2_500, "rate {rate}");
        }
    }

    /// One push per chunk of `sizes` (cycled), then finish.
    fn streamed(x: &[f32], speed: f32, sizes: &[usize]) -> Vec<f32> {
        let mut t = TimeStretch::new(speed, RATE).unwrap();
        let (mut out, mut at, mut i) = (Vec::new(), 0, 0);
        while at < x.len() {
            let n = sizes[i % sizes.len()].min(x.len() - at);
            out.extend(t.push(&x[at..at + n]));
            at += n;
            i += 1;
        }
        out.extend(t.finish());
        out
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|s| s.to_bits()).collect()
    }

    #[test]
    fn streaming_sends_audio_before_the_end() {
        let x = sine(220.0, 0.5, RATE as usize);
        let mut t = TimeStretch::new(1.5, RATE).unwrap();
        let first = t.push(&x[..4800]);
        assert!(!first.is_empty(), "200 ms in, some output is final");
        let mut all = first;
        all.extend(t.push(&x[4800..]));
        let before_finish = all.len();
        all.extend(t.finish());
        assert!(before_finish <= all.len());
        assert_eq!(bits(&all), bits(&time_stretch(&x, 1.5, RATE).unwrap()));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn streaming_equals_one_shot_for_any_split(
            n in 0usize..12_000,
            speed_i in 0usize..8,
            sizes in proptest::collection::vec(1usize..3000, 1..12),
            seed in 1u64..u64::MAX,
        ) {
            let speed = [0.25f32, 0.5, 0.9, 1.0, 1.1, 1.5, 2.0, 4.0][speed_i];
            // Noise plus a tone, so the search has something to find.
            let x: Vec<f32> = noise(n, seed)
                .iter()
                .zip(sine(180.0, 0.5, n))
                .map(|(a, b)| 0.3 * a + b)
                .collect();
            let one = time_stretch(&x, speed, RATE).unwrap();
            let st = streamed(&x, speed, &sizes);
            prop_assert_eq!(bits(&st), bits(&one));
            let single: Vec<usize> = vec![1];
            if n < 3000 {
                prop_assert_eq!(bits(&streamed(&x, speed, &single)), bits(&one));
            }
        }
    }
}
