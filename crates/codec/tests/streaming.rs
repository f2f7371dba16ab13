//! Streaming decode on the fixture codec: chunked output equals the one-shot decode within
//! `STREAMING_TOLERANCE`, and the architectural receptive field bounds the measured one.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use higgs_codec::streaming::STREAMING_TOLERANCE;
use higgs_codec::{Codec, StreamingDecoder};
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
