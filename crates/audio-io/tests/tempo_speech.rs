//! The time stretch on real speech: reference voices at 0.5×, 1.5× and 2× keep their pitch (F0 of
//! each voiced frame against the input frame at the same place in the text) and their level, and
//! come out `1 / speed` as long.
#![allow(clippy::unwrap_used)]

mod common;

use higgs_audio_io::{load_file, time_stretch, DecodeLimits, TimeStretch};

const RATE: u32 = 24_000;

/// F0 of each voiced 40 ms frame (10 ms hop): the best normalised autocorrelation lag between
/// 70 and 400 Hz, kept when it correlates above 0.7 and the frame is not near-silent.
fn f0_frames(x: &[f32]) -> Vec<Option<f64>> {
    let (win, hop) = (960usize, 240usize);
    let (min_lag, max_lag) = ((RATE / 400) as usize, (RATE / 70) as usize);
    let level = (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let mut out = Vec::new();
    let mut at = 0;
    while at + win + max_lag <= x.len() {
        let f = &x[at..at + win + max_lag];
        let e0: f64 = f[..win].iter().map(|v| f64::from(*v).powi(2)).sum();
        let mut f0 = None;
        if (e0 / win as f64).sqrt() > 0.3 * level {
            let mut best = (0usize, 0.0f64);
            for lag in min_lag..=max_lag {
                let (mut d, mut e1) = (0.0f64, 0.0f64);
                for i in 0..win {
                    d += f64::from(f[i]) * f64::from(f[i + lag]);
                    e1 += f64::from(f[i + lag]).powi(2);
                }
                let r = d / (e0 * e1).sqrt().max(1e-12);
                if r > best.1 {
                    best = (lag, r);
                }
            }
            if best.1 > 0.7 {
                f0 = Some(f64::from(RATE) / best.0 as f64);
            }
        }
        out.push(f0);
        at += hop;
    }
    out
}

fn f0_track(x: &[f32]) -> Vec<f64> {
    f0_frames(x).into_iter().flatten().collect()
}

/// F0 ratio output / input of the frames voiced in both, output frame `j` against the input
/// frame at the same place in the text, `round(j * speed)`.
fn aligned_ratios(x: &[f32], y: &[f32], speed: f32) -> Vec<f64> {
    let (fx, fy) = (f0_frames(x), f0_frames(y));
    fy.iter()
        .enumerate()
        .filter_map(|(j, f)| {
            let i = (j as f64 * f64::from(speed)).round() as usize;
            Some(f.as_ref()? / fx.get(i).copied().flatten()?)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn reference_voices_keep_their_pitch_and_level() {
    let dir = common::voices_dir();
    for name in ["belinda", "en_man", "en_woman", "chadwick"] {
        let path = dir.join(format!("{name}.wav"));
        let x = load_file(&path, RATE, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e} (set HIGGS_VOICES)", path.display()));
        let f_in = median(f0_track(&x));
        for speed in [0.5f32, 1.5, 2.0] {
            let t0 = std::time::Instant::now();
            let y = time_stretch(&x, speed, RATE).unwrap();
            let took = t0.elapsed();
            assert_eq!(
                y.len(),
                (x.len() as f64 / f64::from(speed)).round() as usize
            );
            assert!(y.iter().all(|v| v.is_finite()));
            let ratios = aligned_ratios(&x, &y, speed);
            let within = ratios.iter().filter(|r| (*r - 1.0).abs() < 0.05).count() as f64
                / ratios.len() as f64;
            let ratio = median(ratios.clone());
            let (l_in, l) = (rms(&x), rms(&y));
            eprintln!(
                "{name} {:.2} s at {speed}x: {:.2} s in {:.1} ms; F0 (median {f_in:.1} Hz) out/in over {} aligned voiced frames: median {ratio:.4}, {:.0} % within 5 %; rms {l_in:.4} -> {l:.4}",
                x.len() as f64 / f64::from(RATE),
                y.len() as f64 / f64::from(RATE),
                took.as_secs_f64() * 1e3,
                ratios.len(),
                within * 100.0,
            );
            assert!(ratios.len() > 100, "{name} at {speed}: voiced frames found");
            assert!(
                (ratio - 1.0).abs() < 0.02,
                "{name} at {speed}: median F0 ratio {ratio:.4}"
            );
            assert!(
                within > 0.8,
                "{name} at {speed}: only {:.0} % of the frames keep their F0 within 5 %",
                within * 100.0
            );
            assert!(
                (l / l_in - 1.0).abs() < 0.1,
                "{name} at {speed}: rms {l} vs {l_in}"
            );
        }
        // Streamed in codec-sized pieces (the server pushes each decoded window): the same.
        let mut t = TimeStretch::new(1.5, RATE).unwrap();
        let mut y = Vec::new();
        for c in x.chunks(7_680) {
            y.extend(t.push(c));
        }
        y.extend(t.finish());
        assert_eq!(y, time_stretch(&x, 1.5, RATE).unwrap());
    }
}
