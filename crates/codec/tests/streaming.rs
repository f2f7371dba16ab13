//! Streaming decode on the fixture codec: chunked output equals the one-shot decode within
//! `STREAMING_TOLERANCE`, and the architectural receptive field bounds the measured one.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use higgs_codec::streaming::STREAMING_TOLERANCE;
use higgs_codec::{Codec, CodecOptions, StepSpan, StreamingDecoder};
use higgs_testkit::fixtures_root;
use std::sync::OnceLock;

fn codec() -> &'static Codec {
    static C: OnceLock<Codec> = OnceLock::new();
    C.get_or_init(|| {
        Codec::load(
            &fixtures_root().join("codec"),
            &higgs_testkit::test_device(),
        )
        .unwrap()
    })
}

/// Deterministic pseudo-random codes `[n_q, frames]` (xorshift; no fixture dependency).
fn random_codes(frames: usize, seed: u64) -> Tensor {
    let c = codec();
    let mut s = seed | 1;
    let n_q = c.num_codebooks();
    let v: Vec<u32> = (0..n_q * frames)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % c.codebook_size() as u64) as u32
        })
        .collect();
    Tensor::from_vec(v, (n_q, frames), &Device::Cpu).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn streaming_matches_one_shot_for_several_chunk_sizes() {
    let c = codec();
    let frames = 64;
    let codes = random_codes(frames, 0x5eed);
    let one_shot = c.decode(&codes).unwrap();
    for chunk in [1usize, 3, 7, 25, 64] {
        let mut dec = StreamingDecoder::new(c);
        let mut out = Vec::new();
        let mut first_emit_at = None;
        let mut start = 0;
        while start < frames {
            let n = chunk.min(frames - start);
            let piece = dec.push(&codes.narrow(1, start, n).unwrap()).unwrap();
            start += n;
            if first_emit_at.is_none() && !piece.is_empty() {
                first_emit_at = Some(start);
            }
            // Audio only ever comes in whole frames, in order.
            assert_eq!(piece.len() % c.hop_length(), 0);
            out.extend(piece);
            assert_eq!(out.len(), dec.frames_emitted() * c.hop_length());
        }
        out.extend(dec.finish().unwrap());
        let d = max_diff(&out, &one_shot);
        eprintln!("chunk {chunk:>2}: max |chunked - one-shot| = {d:.3e}, first audio after {first_emit_at:?} frames");
        assert!(
            d <= STREAMING_TOLERANCE,
            "chunk {chunk}: {d} > {STREAMING_TOLERANCE}"
        );
        // The first frame is emitted as soon as its right context is complete.
        if frames > dec.right_context() {
            let earliest = dec.right_context() + 1;
            assert!(first_emit_at.unwrap() <= earliest.div_ceil(chunk) * chunk);
        }
    }
}

#[test]
fn streaming_short_stream_is_flushed_by_finish() {
    let c = codec();
    let codes = random_codes(5, 7);
    let mut dec = StreamingDecoder::new(c);
    assert!(dec.push(&codes).unwrap().is_empty());
    let out = dec.finish().unwrap();
    let d = max_diff(&out, &c.decode(&codes).unwrap());
    assert!(d <= STREAMING_TOLERANCE);
    assert!(dec.finish().unwrap().is_empty());
}

#[test]
fn streaming_rejects_bad_chunks() {
    let c = codec();
    let mut dec = StreamingDecoder::new(c);
    let wrong_q = Tensor::zeros(
        (c.num_codebooks() + 1, 2),
        candle_core::DType::U32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(dec.push(&wrong_q).is_err());
    let too_big = Tensor::full(
        c.codebook_size() as u32,
        (c.num_codebooks(), 2),
        &Device::Cpu,
    )
    .unwrap();
    assert!(dec.push(&too_big).is_err());
}

/// Measures the receptive field: change one frame in the middle and see how far (in frames) the
/// decoded audio changes. It must not exceed the architectural bound used as default context.
#[test]
fn measured_receptive_field_is_within_the_architectural_bound() {
    let c = codec();
    let frames = 48;
    let mid = frames / 2;
    let a = random_codes(frames, 11);
    let mut v: Vec<Vec<u32>> = a.to_vec2().unwrap();
    for row in v.iter_mut() {
        row[mid] = (row[mid] + 1) % c.codebook_size() as u32;
    }
    let b = Tensor::new(v, &Device::Cpu).unwrap();
    let (wa, wb) = (c.decode(&a).unwrap(), c.decode(&b).unwrap());
    let hop = c.hop_length();
    let changed: Vec<usize> = (0..frames)
        .filter(|f| max_diff(&wa[f * hop..(f + 1) * hop], &wb[f * hop..(f + 1) * hop]) > 0.0)
        .collect();
    let (lo, hi) = (changed[0], changed[changed.len() - 1]);
    let bound = c.decoder_receptive_field_frames();
    eprintln!(
        "measured reach: {} frames left, {} right; architectural bound {bound}",
        mid - lo,
        hi - mid
    );
    assert!(mid - lo <= bound && hi - mid <= bound);
}

/// Layer-wise streaming ([`Codec::decode_step`]) of `codes` `[n_q, T]` in steps of `chunk`
/// frames, the stream's end known only at its flush (as when EOS comes after the last frame):
/// the samples of stream times `0..T * hop`.
fn decode_in_steps(c: &Codec, codes: &Tensor, chunk: usize) -> Vec<f32> {
    let frames = codes.dim(1).unwrap();
    let mut state = c.initial_step_state(1).unwrap();
    let flush = c.step_flush_frames();
    let padded = Tensor::cat(
        &[
            codes,
            &Tensor::zeros(
                (codes.dim(0).unwrap(), flush + chunk),
                codes.dtype(),
                codes.device(),
            )
            .unwrap(),
        ],
        1,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut f = 0;
    while f < frames + flush {
        let n = chunk;
        let span = StepSpan {
            first_frame: f,
            total_frames: (f + n > frames).then_some(frames),
        };
        let piece = c
            .decode_step(
                &padded.narrow(1, f, n).unwrap().unsqueeze(0).unwrap(),
                &mut state,
                &[span],
            )
            .unwrap();
        assert_eq!(piece.dims(), &[1, n * c.hop_length()]);
        out.extend(piece.squeeze(0).unwrap().to_vec1::<f32>().unwrap());
        f += n;
    }
    let d = c.step_delay_samples();
    out[d..d + frames * c.hop_length()].to_vec()
}

#[test]
fn layer_streaming_matches_one_shot_for_several_step_sizes() {
    // Both conv paths (on CUDA the fused one runs the column kernel with padding 0 on each
    // layer's history + new samples; elsewhere it is conv1d as the default).
    let fused = Codec::load_with(
        &fixtures_root().join("codec"),
        &higgs_testkit::test_device(),
        &CodecOptions {
            fused_conv: true,
            ..CodecOptions::default()
        },
    )
    .unwrap();
    let frames = 64;
    let codes = random_codes(frames, 0x1a7e);
    for c in [codec(), &fused] {
        let one_shot = c.decode(&codes).unwrap();
        assert!(c.step_delay_samples() > 0);
        for chunk in [1usize, 4, 7, 25, 64] {
            let streamed = decode_in_steps(c, &codes, chunk);
            let d = max_diff(&streamed, &one_shot);
            assert!(
                d <= STREAMING_TOLERANCE,
                "step {chunk}: max |streamed - one-shot| = {d:.2e}"
            );
        }
    }
}

#[test]
fn layer_streaming_rows_are_independent_streams() {
    // Three streams batched at different points: A from its start, B ending (and flushing)
    // while A goes on, C joining two steps late with a fresh state. Each row must decode as
    // its stream alone.
    let c = codec();
    let hop = c.hop_length();
    let chunk = 7;
    let flush = c.step_flush_frames();
    let (ta, tb, tc) = (40usize, 12usize, 20usize);
    let codes = [
        random_codes(ta, 1),
        random_codes(tb, 6),
        random_codes(tc, 10),
    ];
    let pad = |x: &Tensor, t: usize| {
        Tensor::cat(
            &[
                x,
                &Tensor::zeros((x.dim(0).unwrap(), 200 - t), x.dtype(), x.device()).unwrap(),
            ],
            1,
        )
        .unwrap()
    };
    let padded: Vec<Tensor> = codes
        .iter()
        .zip([ta, tb, tc])
        .map(|(x, t)| pad(x, t))
        .collect();
    let totals = [ta, tb, tc];
    let mut outs: [Vec<f32>; 3] = Default::default();
    let mut ab = c.initial_step_state(2).unwrap();
    let mut state = None;
    let mut f = [0usize; 3];
    for step in 0..(ta + flush).div_ceil(chunk) {
        let rows: Vec<usize> = if step < 2 { vec![0, 1] } else { vec![0, 1, 2] };
        if step == 2 {
            let fresh = c.initial_step_state(1).unwrap();
            state = Some(higgs_codec::DecoderState::cat(&[&ab, &fresh]).unwrap());
        }
        let st = state.as_mut().unwrap_or(&mut ab);
        let batch: Vec<Tensor> = rows
            .iter()
            .map(|&r| padded[r].narrow(1, f[r], chunk).unwrap())
            .collect();
        let spans: Vec<StepSpan> = rows
            .iter()
            .map(|&r| StepSpan {
                first_frame: f[r],
                total_frames: Some(totals[r]),
            })
            .collect();
        let wav = c
            .decode_step(&Tensor::stack(&batch, 0).unwrap(), st, &spans)
            .unwrap();
        for (i, &r) in rows.iter().enumerate() {
            outs[r].extend(wav.get(i).unwrap().to_vec1::<f32>().unwrap());
            f[r] += chunk;
        }
    }
    let d = c.step_delay_samples();
    for (r, (x, t)) in codes.iter().zip(totals).enumerate() {
        let one_shot = c.decode(x).unwrap();
        let got = &outs[r][d..d + t * hop];
        let diff = max_diff(got, &one_shot);
        assert!(
            diff <= STREAMING_TOLERANCE,
            "stream {r}: max |diff| {diff:.2e}"
        );
    }
    // A pool of states: rows written with `set_rows` come back unchanged through `rows`, the
    // others untouched. Two mid-stream states (after one step each) go into a pool of 4.
    let _ = state;
    let span = |f| StepSpan {
        first_frame: f,
        total_frames: None,
    };
    let mut live = c.initial_step_state(2).unwrap();
    let two = Tensor::stack(&[random_codes(chunk, 4), random_codes(chunk, 10)], 0).unwrap();
    c.decode_step(&two, &mut live, &[span(100), span(100)])
        .unwrap();
    let pool = c.initial_step_state(4).unwrap();
    pool.set_rows(&[3, 1], &live).unwrap();
    let mut back = pool.rows(&[3, 1, 0]).unwrap();
    let mut want =
        higgs_codec::DecoderState::cat(&[&live, &c.initial_step_state(1).unwrap()]).unwrap();
    let next = Tensor::stack(&vec![random_codes(chunk, 12); 3], 0).unwrap();
    let spans = [span(100 + chunk), span(100 + chunk), span(100 + chunk)];
    let got = c
        .decode_step(&next, &mut back, &spans)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let exp = c
        .decode_step(&next, &mut want, &spans)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(got, exp);
    // The same codes after different histories differ: the rows really carry state.
    assert_ne!(got[0], got[1]);
    assert_ne!(got[0], got[2]);
}

#[test]
fn planned_layer_steps_let_out_the_one_shot_audio() {
    // The engine's path in layer mode: frames arrive a few at a time, the planner (no left
    // context) cuts steps with the windows' chunking, each step is decoded with the stream's
    // state and `StepAudio` lets out whole frames; the stream ends by `finish` after its last
    // frame. The audio must be the one-shot decode, in order.
    use higgs_codec::{StepAudio, WindowPlanner};
    let c = codec();
    let (hop, r) = (c.hop_length(), c.decoder_receptive_field_frames());
    let frames = 50;
    let codes = random_codes(frames, 0xfeed);
    let one_shot = c.decode(&codes).unwrap();
    let n = c.num_codebooks();
    let all: Vec<Vec<u32>> = codes.t().unwrap().to_vec2().unwrap();
    for (arrive, chunk) in [(1usize, 4usize), (3, 25), (50, 8)] {
        let mut plan = WindowPlanner::new(n, 0, r);
        let mut state = c.initial_step_state(1).unwrap();
        let mut audio = StepAudio::default();
        let mut out = Vec::new();
        let mut got = 0;
        loop {
            if got < frames {
                let k = arrive.min(frames - got);
                plan.push_frames(all[got..got + k].iter().cloned());
                got += k;
                if got == frames {
                    plan.finish();
                }
            }
            while let Some(step) = plan.next_step(chunk, chunk, c.step_flush_frames()) {
                plan.accept_step(&step);
                let len = step.codes.frames();
                let t =
                    Tensor::from_vec(step.codes.data.clone(), (1, n, len), &Device::Cpu).unwrap();
                let span = StepSpan {
                    first_frame: step.first_frame,
                    total_frames: step.total_frames,
                };
                let wav = c.decode_step(&t, &mut state, &[span]).unwrap();
                let samples = wav.squeeze(0).unwrap().to_vec1::<f32>().unwrap();
                if let Some((first, s)) = audio.push(&step, &samples, hop, c.step_delay_samples()) {
                    assert_eq!(first * hop, out.len(), "frames let out out of order");
                    // A frame is out once decoded: the step's samples reach `delay` short of
                    // its newest frame, which is less than the windows' `r` frames.
                    let last = (out.len() + s.len()) / hop;
                    assert!(
                        last * hop + c.step_delay_samples() <= got * hop || plan.is_done(),
                        "frame {last} out before it was decoded"
                    );
                    out.extend(s);
                }
            }
            if plan.is_done() {
                break;
            }
        }
        assert_eq!(audio.frames_emitted(), frames);
        let d = max_diff(&out, &one_shot);
        assert!(
            d <= STREAMING_TOLERANCE,
            "arrive {arrive} chunk {chunk}: max |diff| {d:.2e}"
        );
    }
}
