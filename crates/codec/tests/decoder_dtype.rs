//! The codec's throughput options against the reference goldens, on the CPU and
//! (`HIGGS_TEST_DEVICE=cuda`) on the GPU: the acoustic decoder in bf16
//! (`CodecOptions::decoder_dtype`; not bit-exact, within an accuracy bound, with the fused bf16
//! Snake kernel on CUDA), pointwise convs as one matmul (`direct_pointwise`; golden accuracy) and
//! the other stride-1 convs through the column kernel + one GEMM on CUDA (`fused_conv`; golden
//! accuracy, batch rows independent).
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Tensor};
use higgs_codec::{Codec, CodecOptions};
use higgs_testkit::{fixtures_root, Golden};

fn load(decoder_dtype: DType, fused_snake: bool) -> Codec {
    load_with(CodecOptions {
        decoder_dtype,
        fused_snake,
        ..CodecOptions::default()
    })
}

fn load_with(opts: CodecOptions) -> Codec {
    Codec::load_with(
        &fixtures_root().join("codec"),
        &higgs_testkit::test_device(),
        &opts,
    )
    .unwrap()
}

/// `(case, codes, golden waveform)` of every decode case in the golden file.
fn cases(g: &Golden) -> Vec<(String, Tensor, Vec<f32>)> {
    let mut names: Vec<String> = g
        .arrays
        .keys()
        .filter_map(|k| k.strip_suffix(".waveform").map(str::to_string))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|case| {
            let own = format!("{case}.codes");
            let codes_name = if g.has(&own) {
                own
            } else {
                format!("enc{}.codes", case.trim_start_matches("dec"))
            };
            let codes = g.get(&codes_name).clone();
            let wave = g
                .f32(&format!("{case}.waveform"))
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (case, codes, wave)
        })
        .collect()
}

/// Signal-to-error ratio in dB of `actual` against `expected`.
fn snr_db(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len());
    let sig: f64 = expected.iter().map(|v| f64::from(*v).powi(2)).sum();
    let err: f64 = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (f64::from(*a) - f64::from(*e)).powi(2))
        .sum();
    10.0 * (sig / err.max(1e-30)).log10()
}

/// bf16 keeps 8 significant bits (~50 dB for one rounding); a decoder of ~40 layers loses much
/// of that on the tiny random fixture codec, whose untrained weights amplify errors: rounding
/// only its weights to bf16 (f32 maths) already gives 36 dB, the whole bf16 decoder 28 dB on the
/// CPU (five bf16 roundings per Snake there). 25 dB (error amplitude ~6 % of the signal's) is
/// far above what a broken cast, layout or kernel gives (~0 dB). The full-size decoder on the
/// GPU is measured in docs/BENCHMARKS.md.
const MIN_SNR_DB: f64 = 25.0;

#[test]
fn bf16_decoder_stays_within_the_accuracy_bound() {
    let g = Golden::load("codec/golden.safetensors");
    let all = cases(&g);
    assert!(!all.is_empty(), "no decode cases in the golden file");
    // Both conv paths: candle's conv1d and (on CUDA) the column kernel + GEMM in bf16.
    let bf16: Vec<(bool, Codec)> = [false, true]
        .into_iter()
        .map(|fused_conv| {
            let opts = CodecOptions {
                decoder_dtype: DType::BF16,
                fused_conv,
                ..CodecOptions::default()
            };
            (fused_conv, load_with(opts))
        })
        .collect();
    let f32_codec = load(DType::F32, true);
    for ((case, codes, expected), (fused_conv, bf16)) in
        all.iter().flat_map(|c| bf16.iter().map(move |b| (c, b)))
    {
        let wav = bf16.decode(codes).unwrap();
        let snr = snr_db(&wav, expected);
        eprintln!("{case}: bf16 decoder (fused conv {fused_conv}) SNR {snr:.1} dB against the f32 reference");
        assert!(
            snr >= MIN_SNR_DB,
            "{case}: SNR {snr:.1} dB < {MIN_SNR_DB} dB"
        );
        // The option must not leak into the default decoder: f32 stays at golden accuracy.
        let exact = f32_codec.decode(codes).unwrap();
        let snr_f32 = snr_db(&exact, expected);
        assert!(
            snr_f32 > snr + 20.0,
            "{case}: f32 decoder SNR {snr_f32:.1} dB is not far above bf16's {snr:.1} dB"
        );
    }
}

#[test]
fn bf16_decoder_batches_like_single_decodes() {
    // Streaming decode batches windows of several requests: rows must not interact in bf16 either.
    let g = Golden::load("codec/golden.safetensors");
    let (_, codes, _) = cases(&g).into_iter().next().unwrap();
    let codec = load(DType::BF16, true);
    // A second, different row: the same codes reversed in time.
    let codes = codes.to_dtype(DType::I64).unwrap();
    let t = codes.dim(1).unwrap();
    let rev: Vec<u32> = (0..t as u32).rev().collect();
    let idx = Tensor::from_vec(rev, t, codes.device()).unwrap();
    let reversed = codes.index_select(&idx, 1).unwrap();
    let batch = Tensor::stack(&[&codes, &reversed], 0).unwrap();
    let both = codec.decode_batch(&batch).unwrap();
    let one = codec.decode(&codes).unwrap();
    let row0: Vec<f32> = both.get(0).unwrap().to_vec1().unwrap();
    let row1: Vec<f32> = both.get(1).unwrap().to_vec1().unwrap();
    let single1 = codec.decode(&reversed).unwrap();
    if higgs_testkit::test_device().is_cuda() {
        // cuBLAS picks other bf16 GEMM kernels for another batch size (H100: not bit-equal);
        // rows that mixed would be ~0 dB apart, rounding differences are far above the bound.
        for (row, single, i) in [(&row0, &one, 0), (&row1, &single1, 1)] {
            let snr = snr_db(row, single);
            assert!(
                snr >= MIN_SNR_DB,
                "batch row {i} vs its single decode: {snr:.1} dB"
            );
        }
    } else {
        assert_eq!(row0, one, "batch row 0 differs from the single decode");
        assert_eq!(row1, single1, "batch row 1 differs from the single decode");
    }
}

#[test]
fn fused_and_generic_snake_agree_in_bf16() {
    // On CUDA the bf16 Snake is a fused kernel computing in f32; elsewhere both loads take the
    // generic path and must be identical.
    let g = Golden::load("codec/golden.safetensors");
    let (case, codes, expected) = cases(&g).into_iter().next().unwrap();
    let fused = load(DType::BF16, true).decode(&codes).unwrap();
    let generic = load(DType::BF16, false).decode(&codes).unwrap();
    let (sf, sg) = (snr_db(&fused, &expected), snr_db(&generic, &expected));
    eprintln!("{case}: bf16 SNR fused Snake {sf:.1} dB, generic {sg:.1} dB");
    if higgs_testkit::test_device().is_cuda() {
        // f32 maths inside the kernel: at least as accurate as five bf16-rounded ops.
        assert!(sf >= sg - 1.0, "fused {sf:.1} dB < generic {sg:.1} dB");
    } else {
        assert_eq!(fused, generic);
    }
}

#[test]
fn conv_paths_keep_golden_accuracy() {
    // The pointwise convs of both DAC stacks as one matmul (the default): same maths, another
    // summation order; candle's conv1d (`HIGGS_CODEC_POINTWISE=generic`); and with the other
    // stride-1 convs through the column kernel + GEMM (`HIGGS_CODEC_CONV=fused`; on CUDA: the
    // kernel's indexing, zero padding, fused Snake and bias row; elsewhere conv1d as before).
    for (direct_pointwise, fused_conv) in [(true, false), (false, false), (true, true)] {
        conv_path_keeps_golden_accuracy(CodecOptions {
            direct_pointwise,
            fused_conv,
            ..CodecOptions::default()
        });
    }
}

#[test]
fn fused_conv_batches_like_single_decodes() {
    // The column kernel indexes the batch by grid row: two different rows of one batch must each
    // decode as they do alone (within the fixture tolerance: cuBLAS may pick another kernel).
    let g = Golden::load("codec/golden.safetensors");
    let (case, codes, expected) = cases(&g).into_iter().next().unwrap();
    let codec = load_with(CodecOptions {
        fused_conv: true,
        ..CodecOptions::default()
    });
    let codes = codes.to_dtype(DType::I64).unwrap();
    let t = codes.dim(1).unwrap();
    let rev: Vec<u32> = (0..t as u32).rev().collect();
    let idx = Tensor::from_vec(rev, t, codes.device()).unwrap();
    let reversed = codes.index_select(&idx, 1).unwrap();
    let both = codec
        .decode_batch(&Tensor::stack(&[&codes, &reversed], 0).unwrap())
        .unwrap();
    let single1 = codec.decode(&reversed).unwrap();
    let max_diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let row0: Vec<f32> = both.get(0).unwrap().to_vec1().unwrap();
    let row1: Vec<f32> = both.get(1).unwrap().to_vec1().unwrap();
    let (d0, d1) = (max_diff(&row0, &expected), max_diff(&row1, &single1));
    eprintln!("{case}: fused conv batch rows: max |diff| {d0:.2e} (golden), {d1:.2e} (single)");
    assert!(
        d0 <= 1e-4,
        "{case}: batch row 0 is {d0:.2e} from the golden"
    );
    assert!(
        d1 <= 1e-4,
        "{case}: batch row 1 is {d1:.2e} from its single decode"
    );
}

fn conv_path_keeps_golden_accuracy(opts: CodecOptions) {
    let g = Golden::load("codec/golden.safetensors");
    let codec = load_with(opts);
    let CodecOptions {
        direct_pointwise,
        fused_conv,
        ..
    } = opts;
    for (case, codes, expected) in cases(&g) {
        let wav = codec.decode(&codes).unwrap();
        let d = wav
            .iter()
            .zip(&expected)
            .map(|(a, e)| (a - e).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{case}: direct pointwise {direct_pointwise}, fused conv {fused_conv}: max |diff| {d:.2e}"
        );
        assert_eq!(wav.len(), expected.len());
        assert!(
            d <= 1e-4,
            "{case}: max |diff| {d:.2e} > 1e-4 (fixture tolerance)"
        );
    }
    // The encoder's residual units take the same path: its codes must equal the goldens'.
    let mut checked = 0;
    for name in g.arrays.keys().filter(|k| k.ends_with(".input_wave")) {
        let case = name.trim_end_matches(".input_wave");
        let codes_name = format!("{case}.codes");
        if !g.has(&codes_name) || g.has(&format!("{case}.resampled_24k")) {
            continue; // other-rate inputs are resampled by audio-io first
        }
        let wave = g.f32(name).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let codes = codec.encode(&wave).unwrap();
        let expected: Vec<Vec<i64>> = g
            .get(&codes_name)
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec2()
            .unwrap();
        let actual: Vec<Vec<i64>> = codes.to_dtype(DType::I64).unwrap().to_vec2().unwrap();
        assert_eq!(
            actual, expected,
            "{case}: codes differ with direct pointwise {direct_pointwise}, fused conv {fused_conv}"
        );
        checked += 1;
    }
    assert!(checked > 0, "no 24 kHz encode case in the golden file");
}

#[test]
fn marked_decode_is_the_decode_and_marks_every_op() {
    // `dev bench-codec --profile` times ops through `decode_batch_marked`: it must be the same
    // computation as `decode_batch` and mark each op of the architecture once per occurrence.
    use higgs_codec::DecoderOp;
    use std::collections::BTreeMap;
    let g = Golden::load("codec/golden.safetensors");
    let codec = load(DType::F32, true);
    let (_, codes, _) = cases(&g).into_iter().next().unwrap();
    let batch = Tensor::stack(&[&codes, &codes], 0).unwrap();
    let plain: Vec<Vec<f32>> = codec.decode_batch(&batch).unwrap().to_vec2().unwrap();
    let mut seen: BTreeMap<DecoderOp, usize> = BTreeMap::new();
    let mut order = Vec::new();
    let marked: Vec<Vec<f32>> = codec
        .decode_batch_marked(&batch, &mut |op| {
            *seen.entry(op).or_default() += 1;
            order.push(op);
            Ok(())
        })
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(marked, plain);
    let blocks = codec.config().ratios.len();
    let units = 3 * blocks; // three residual units per up-sampling block
    let expected = BTreeMap::from([
        (DecoderOp::Quantizer, 1),
        (DecoderOp::Cast, 2),
        (DecoderOp::ConvIn, 1),
        (DecoderOp::Snake, blocks + 2 * units + 1),
        (DecoderOp::ConvTranspose, blocks),
        (DecoderOp::DilatedConv, units),
        (DecoderOp::PointwiseConv, units),
        (DecoderOp::ResidualAdd, units),
        (DecoderOp::ConvOut, 1),
    ]);
    assert_eq!(seen, expected);
    assert_eq!(order.first(), Some(&DecoderOp::Quantizer));
    assert_eq!(order.last(), Some(&DecoderOp::Cast));
}
