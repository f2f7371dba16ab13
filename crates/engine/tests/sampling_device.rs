//! Sampling on the test device (`HIGGS_TEST_DEVICE=cuda` in a cuda build): rows as wide as the
//! text vocabulary (128,256 logits) sample there and equal the host path for the same uniforms.
//! Regression test of the HTTP failures under load: a request that ends its audio by EOS goes
//! back to text mode, and its text row was sampled with candle's CUDA sort, which cannot launch
//! for rows that wide (`CUDA_ERROR_INVALID_VALUE`), failing the request mid-stream.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use candle_core::{DType, Tensor};
use higgs_engine::sampling::{sample_row, sample_rows_with, DeviceSampler, SamplingParams, SeqRng};

fn check(rows: usize, cols: usize, dtype: DType) {
    for sampler in [DeviceSampler::Ops, DeviceSampler::Fused] {
        check_with(rows, cols, dtype, sampler);
    }
}

/// On a CUDA build the fused kernel takes rows up to 2,048 entries; elsewhere `Fused` falls back.
fn check_with(rows: usize, cols: usize, dtype: DType, sampler: DeviceSampler) {
    let dev = higgs_testkit::test_device();
    let mut rng = SeqRng::new(Some(3));
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| (rng.uniform() - 0.5) * 12.0)
        .collect();
    let params: Vec<SamplingParams> = (0..rows)
        .map(|i| SamplingParams {
            temperature: [1.0, 0.7, 0.0][i % 3],
            top_k: [Some(50), None][i % 2],
            top_p: [0.95, 1.0][(i / 2) % 2],
        })
        .collect();
    let us: Vec<f32> = (0..rows).map(|_| rng.uniform()).collect();
    let t = Tensor::from_vec(data, (rows, cols), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let got = sample_rows_with(&t, &params, &us, sampler).unwrap();
    // The host reference on the same (dtype-rounded) logits.
    let host = t
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(&candle_core::Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let want: Vec<u32> = (0..rows)
        .map(|i| sample_row(&host[i], &params[i], us[i]))
        .collect();
    // Equal up to the order of tied logits: candle's CUDA sort is not stable, so among entries
    // of the same value (frequent in bf16) the device may walk them in another order than the
    // host. The draw lands on the same sorted position, hence on an entry of the same value;
    // the distribution is the same. Anything else (a different value) is a sampling bug.
    for i in 0..rows {
        assert!(
            got[i] == want[i] || host[i][got[i] as usize] == host[i][want[i] as usize],
            "{rows}x{cols} {dtype:?} {sampler:?} row {i}: device {} ({}) vs host {} ({})",
            got[i],
            host[i][got[i] as usize],
            want[i],
            host[i][want[i] as usize]
        );
    }
    if dtype == DType::F32 {
        // Random f32 logits have no ties: the ids are the host's exactly.
        assert_eq!(got, want, "{rows}x{cols} {dtype:?} {sampler:?}");
    }
}

#[test]
fn text_vocabulary_rows_sample_on_the_test_device() {
    check(3, 128_256, DType::F32);
    check(2, 128_256, DType::BF16);
}

#[test]
fn audio_rows_sample_on_the_test_device() {
    check(16, 1026, DType::F32);
    // bf16 logits have many ties (see `check_with`).
    check(64, 1026, DType::BF16);
    check(7, 2048, DType::F32);
}
