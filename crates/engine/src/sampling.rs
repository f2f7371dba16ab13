//! Sampling with the semantics of HF `transformers` 4.46 logits warpers as the reference uses them
//! (`TemperatureLogitsWarper` → `TopKLogitsWarper` → `TopPLogitsWarper` → softmax → multinomial;
//! argmax when not sampling), plus repetition-aware sampling (RAS) of
//! `HiggsAudioModel._sample_audio_tokens` (reference spec §4.3).
//!
//! Randomness comes from one RNG per sequence, so a sequence's output does not depend on which
//! other sequences share its batch, and the same seed on the same build gives the same output.
//! Bit-exact reproduction of PyTorch's RNG is not possible; parity is checked with greedy decoding.
//!
//! Two implementations of the same maths: [`sample_row`] on host slices (used on the CPU, where the
//! logits already live in host memory) and [`sample_rows_on_device`], built from candle ops so
//! the logits never leave the GPU (only the sampled ids are copied back).

use candle_core::{DType, Device, Tensor, D};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Sampling controls of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// `<= 0` means greedy (argmax), as `serve_engine` does for temperature 0.
    pub temperature: f32,
    /// `None` or `Some(0)`: no top-k.
    pub top_k: Option<usize>,
    /// `>= 1`: no top-p.
    pub top_p: f32,
}

impl SamplingParams {
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_k: None,
        top_p: 1.0,
    };

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    fn top_k(&self) -> Option<usize> {
        self.top_k.filter(|&k| k > 0)
    }
}

/// Repetition-aware sampling: a sampled code that already occurs `max_repeat` times in the last
/// `win_len` columns of the audio history is re-drawn from the raw distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RasParams {
    /// 0 disables RAS.
    pub win_len: usize,
    pub max_repeat: usize,
}

impl RasParams {
    pub const OFF: Self = Self {
        win_len: 0,
        max_repeat: 2,
    };

    pub fn enabled(&self) -> bool {
        self.win_len > 0
    }
}

/// Per-sequence random source.
#[derive(Debug, Clone)]
pub struct SeqRng(StdRng);

impl SeqRng {
    pub fn new(seed: Option<u64>) -> Self {
        Self(match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        })
    }

    /// A uniform draw in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0.random::<f32>()
    }
}

fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // All entries masked or NaN: fall back to uniform over the finite ones, else all.
        let finite = x.iter().filter(|v| v.is_finite()).count();
        let all = finite == 0;
        let n = if all { x.len() } else { finite }.max(1) as f32;
        for v in x.iter_mut() {
            *v = if all || v.is_finite() { 1.0 / n } else { 0.0 };
        }
        return;
    }
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Index of the largest value; the first one on ties (as torch.argmax on CPU).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Inverse-CDF draw from probabilities `p` with a uniform `u` in [0, 1), walking the entries from
/// the most to the least probable (the order the device path sorts into, so both paths agree).
fn draw(p: &[f32], u: f32) -> u32 {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i] > 0.0).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let total: f32 = order.iter().map(|&i| p[i]).sum();
    let target = u * total;
    let mut acc = 0f32;
    for &i in &order {
        acc += p[i];
        if acc > target {
            return i as u32;
        }
    }
    order.last().copied().unwrap_or(0) as u32
}

/// Applies temperature, top-k and top-p to `scores` in place (HF order and tie rules).
pub fn warp(scores: &mut [f32], p: &SamplingParams) {
    if p.temperature != 1.0 && p.temperature > 0.0 {
        for v in scores.iter_mut() {
            *v /= p.temperature;
        }
    }
    if let Some(k) = p.top_k() {
        let k = k.min(scores.len());
        // The k-th largest by selection (O(V)), not a full sort: text rows have 128k entries.
        let mut sorted: Vec<f32> = scores.to_vec();
        let (_, &mut kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        // TopK keeps every logit >= the k-th largest: ties can keep more than k.
        for v in scores.iter_mut() {
            if *v < kth {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    if p.top_p < 1.0 {
        // Entries top-k already removed (-inf) have probability 0: they lead the ascending order,
        // add exactly 0 to every cumulative sum and are removed again, so leaving them out gives
        // the same result bit for bit and sorts ~50 entries instead of the whole vocabulary.
        let mut order: Vec<usize> = (0..scores.len())
            .filter(|&i| scores[i] != f32::NEG_INFINITY)
            .collect();
        if order.is_empty() {
            return;
        }
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b])); // ascending
        let mut probs: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
        softmax_in_place(&mut probs);
        let mut cum = 0f32;
        let last = order.len() - 1;
        for (r, &i) in order.iter().enumerate() {
            cum += probs[r];
            // Remove entries whose ascending cumulative mass is <= 1 - top_p; keep the top token.
            if cum <= 1.0 - p.top_p && r != last {
                scores[i] = f32::NEG_INFINITY;
            }
        }
    }
}

/// Samples one id from a row of logits (host path).
pub fn sample_row(logits: &[f32], p: &SamplingParams, u: f32) -> u32 {
    if p.is_greedy() {
        return argmax(logits);
    }
    let mut s = logits.to_vec();
    warp(&mut s, p);
    softmax_in_place(&mut s);
    draw(&s, u)
}

/// RAS re-draw from the raw (unwarped) distribution of a row.
pub fn resample_raw(logits: &[f32], u: f32) -> u32 {
    let mut s = logits.to_vec();
    softmax_in_place(&mut s);
    draw(&s, u)
}

/// Counts occurrences of `code` in the last `win` entries of a codebook's history.
pub fn ras_count(history_row: &[u32], win: usize, code: u32) -> usize {
    let start = history_row.len().saturating_sub(win);
    history_row[start..].iter().filter(|&&c| c == code).count()
}

/// Device path: samples one id per row of `logits` (`[R, V]`, f32) with per-row parameters,
/// using only candle ops; returns the ids (the one host copy). Same maths as [`sample_row`].
pub fn sample_rows_on_device(
    logits: &Tensor,
    params: &[SamplingParams],
    uniforms: &[f32],
) -> candle_core::Result<Vec<u32>> {
    let (r, v) = logits.dims2()?;
    let dev = logits.device();
    // bf16 logits are sampled in f32, as on the host (the parameter tensors are f32).
    let logits = &logits.to_dtype(DType::F32)?;
    if !fits_device_sort(v) {
        candle_core::bail!(
            "sample_rows_on_device: rows of {v} entries exceed the device sort's {DEVICE_SORT_MAX_COLS}; use sample_rows"
        );
    }
    if params.iter().all(SamplingParams::is_greedy) {
        return logits.argmax(D::Minus1)?.to_vec1::<u32>();
    }
    let temps: Vec<f32> = params
        .iter()
        .map(|p| {
            if p.temperature > 0.0 {
                p.temperature
            } else {
                1.0
            }
        })
        .collect();
    let x = logits.broadcast_div(&Tensor::from_vec(temps, (r, 1), dev)?)?;
    let (sorted, order) = x.contiguous()?.sort_last_dim(false)?; // descending
    let neg_inf = Tensor::full(f32::NEG_INFINITY, (r, v), dev)?;
    // top-k: keep entries >= the k-th largest (ties included).
    let kth_idx: Vec<u32> = params
        .iter()
        .map(|p| (p.top_k().unwrap_or(v).min(v) - 1) as u32)
        .collect();
    let kth = sorted.gather(&Tensor::from_vec(kth_idx, (r, 1), dev)?, 1)?;
    let sorted = sorted.broadcast_ge(&kth)?.where_cond(&sorted, &neg_inf)?;
    // top-p on the descending order: an entry goes when the mass from it to the end (its
    // ascending cumulative probability) is <= 1 - top_p; the top entry always stays.
    let probs = candle_nn_softmax(&sorted)?;
    let cum = probs.cumsum(1)?;
    let tail = ((1.0 - &cum)? + &probs)?;
    let thresh: Vec<f32> = params
        .iter()
        .map(|p| if p.top_p < 1.0 { 1.0 - p.top_p } else { -1.0 })
        .collect();
    let thresh = Tensor::from_vec(thresh, (r, 1), dev)?;
    let mut keep = tail.broadcast_gt(&thresh)?;
    let first_col = Tensor::arange(0u32, v as u32, dev)?
        .eq(0u32)?
        .unsqueeze(0)?
        .broadcast_as((r, v))?;
    keep = keep.maximum(&first_col)?;
    // Entries already removed by top-k stay removed.
    keep = keep.minimum(&sorted.ge(f32::MIN)?)?;
    let sorted = keep.where_cond(&sorted, &neg_inf)?;
    let probs = candle_nn_softmax(&sorted)?;
    let cum = probs.cumsum(1)?;
    let u = Tensor::from_vec(uniforms.to_vec(), (r, 1), dev)?;
    let target = u.broadcast_mul(&cum.narrow(1, v - 1, 1)?)?;
    // Position = number of entries whose cumulative mass is <= the target, capped at the last
    // kept entry.
    let pos = cum
        .broadcast_le(&target)?
        .to_dtype(DType::F32)?
        .sum_keepdim(1)?;
    let n_kept = keep.to_dtype(DType::F32)?.sum_keepdim(1)?;
    let pos = pos.minimum(&(n_kept - 1.0)?)?.to_dtype(DType::U32)?;
    let sampled = order.gather(&pos, 1)?.squeeze(1)?;
    // Greedy rows in a mixed batch take the argmax.
    let greedy: Vec<u8> = params.iter().map(|p| p.is_greedy() as u8).collect();
    let greedy = Tensor::from_vec(greedy, r, dev)?;
    let am = logits.argmax(D::Minus1)?;
    greedy.where_cond(&am, &sampled)?.to_vec1::<u32>()
}

/// How rows that fit the device are sampled on a GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSampler {
    /// [`sample_rows_on_device`]: a chain of candle ops.
    #[default]
    Ops,
    /// One fused kernel launch per call (`higgs_kernels::sample_rows`, rows up to 2,048
    /// entries; wider ones take the `Ops` path). Needs the `cuda` feature, else `Ops`.
    Fused,
}

/// Samples one id per row of `logits` (`[R, V]`) with per-row parameters and uniforms: the host
/// path on the CPU, one device call (and one host copy of the ids) elsewhere. Rows are
/// independent, so a sequence's ids do not depend on which other rows share the call.
pub fn sample_rows(
    logits: &Tensor,
    params: &[SamplingParams],
    uniforms: &[f32],
) -> candle_core::Result<Vec<u32>> {
    sample_rows_with(logits, params, uniforms, DeviceSampler::default())
}

/// [`sample_rows`] with the device sampler chosen.
pub fn sample_rows_with(
    logits: &Tensor,
    params: &[SamplingParams],
    uniforms: &[f32],
    device: DeviceSampler,
) -> candle_core::Result<Vec<u32>> {
    let (r, _) = logits.dims2()?;
    if params.len() != r || uniforms.len() != r {
        candle_core::bail!(
            "sample_rows: {r} rows, {} params, {} uniforms",
            params.len(),
            uniforms.len()
        );
    }
    if logits.device().is_cpu() || !fits_device_sort(logits.dim(1)?) {
        let rows = host_rows(logits)?;
        let one = |k: usize| sample_row(&rows[k], &params[k], uniforms[k]);
        // Wide rows (text logits off a GPU) cost ~1 ms each on the host: spread several over
        // threads. Rows are independent, so the ids are the same as in order.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if !logits.device().is_cpu() && r > 1 && threads > 1 {
            let per = r.div_ceil(threads);
            let mut ids = vec![0u32; r];
            std::thread::scope(|sc| {
                for (c, out) in ids.chunks_mut(per).enumerate() {
                    let one = &one;
                    sc.spawn(move || {
                        for (k, id) in out.iter_mut().enumerate() {
                            *id = one(c * per + k);
                        }
                    });
                }
            });
            return Ok(ids);
        }
        Ok((0..r).map(one).collect())
    } else if device == DeviceSampler::Fused && r > 0 && fused_fits(logits)? {
        sample_rows_fused(logits, params, uniforms)
    } else {
        sample_rows_on_device(logits, params, uniforms)
    }
}

#[cfg(feature = "cuda")]
fn fused_fits(logits: &Tensor) -> candle_core::Result<bool> {
    Ok(logits.device().is_cuda() && logits.dim(1)? <= higgs_kernels::SAMPLE_MAX_COLS)
}

#[cfg(not(feature = "cuda"))]
fn fused_fits(_: &Tensor) -> candle_core::Result<bool> {
    Ok(false)
}

/// The fused kernel: one `[R, 4]` parameter upload, one launch, one copy of the ids.
#[cfg(feature = "cuda")]
fn sample_rows_fused(
    logits: &Tensor,
    params: &[SamplingParams],
    uniforms: &[f32],
) -> candle_core::Result<Vec<u32>> {
    let (r, _) = logits.dims2()?;
    let mut p = Vec::with_capacity(r * 4);
    for (sp, &u) in params.iter().zip(uniforms) {
        p.extend([sp.temperature, sp.top_k().unwrap_or(0) as f32, sp.top_p, u]);
    }
    let p = Tensor::from_vec(p, (r, 4), logits.device())?;
    let x = logits.to_dtype(DType::F32)?.contiguous()?;
    higgs_kernels::sample_rows(&x, &p)?.to_vec1::<u32>()
}

#[cfg(not(feature = "cuda"))]
fn sample_rows_fused(
    logits: &Tensor,
    params: &[SamplingParams],
    uniforms: &[f32],
) -> candle_core::Result<Vec<u32>> {
    sample_rows_on_device(logits, params, uniforms)
}

/// Widest row the device path sorts. candle's CUDA `arg_sort` keeps a whole row, padded to a power
/// of two, in one block's shared memory (4 bytes an entry; 48 KiB without an opt-in): a text row
/// (128,256 entries → 512 KiB) fails to launch with `CUDA_ERROR_INVALID_VALUE`. Rows wider than
/// this (text logits, one or two steps per request) are sampled on the host; audio rows (1,026)
/// stay on the device.
pub const DEVICE_SORT_MAX_COLS: usize = 8192;

/// Whether [`sample_rows_on_device`] can take rows of `cols` entries.
pub fn fits_device_sort(cols: usize) -> bool {
    cols <= DEVICE_SORT_MAX_COLS
}

fn candle_nn_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// Moves `[R, V]` logits to host rows (used on the CPU, where this is a view of host memory).
pub fn host_rows(logits: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    logits
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ties() {
        let mut s = vec![1.0, 3.0, 2.0, 3.0, 0.5];
        warp(
            &mut s,
            &SamplingParams {
                temperature: 1.0,
                top_k: Some(1),
                top_p: 1.0,
            },
        );
        let kept: Vec<usize> = (0..5).filter(|&i| s[i].is_finite()).collect();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn top_p_always_keeps_the_top_token() {
        let mut s = vec![10.0, 0.0, -1.0];
        warp(
            &mut s,
            &SamplingParams {
                temperature: 1.0,
                top_k: None,
                top_p: 0.01,
            },
        );
        assert!(s[0].is_finite());
        assert!(!s[1].is_finite() && !s[2].is_finite());
        // Draws from a single-token distribution always give that token.
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(
                sample_row(
                    &[10.0, 0.0, -1.0],
                    &SamplingParams {
                        temperature: 1.0,
                        top_k: None,
                        top_p: 0.01
                    },
                    u
                ),
                0
            );
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // probs ~ [0.5, 0.3, 0.2] ; top_p 0.7 keeps the first two (0.2 <= 0.3 removed).
        let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let mut s = logits.clone();
        warp(
            &mut s,
            &SamplingParams {
                temperature: 1.0,
                top_k: None,
                top_p: 0.7,
            },
        );
        assert!(s[0].is_finite() && s[1].is_finite() && !s[2].is_finite());
    }

    #[test]
    fn greedy_is_argmax_and_first_on_ties() {
        assert_eq!(
            sample_row(&[0.0, 2.0, 2.0], &SamplingParams::GREEDY, 0.3),
            1
        );
    }

    #[test]
    fn draws_follow_the_distribution() {
        let logits: Vec<f32> = [0.7f32, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
        };
        let mut counts = [0usize; 3];
        let n = 10_000;
        for i in 0..n {
            counts[sample_row(&logits, &p, (i as f32 + 0.5) / n as f32) as usize] += 1;
        }
        assert!(
            (counts[0] as f32 / n as f32 - 0.7).abs() < 0.01,
            "{counts:?}"
        );
        assert!(
            (counts[2] as f32 / n as f32 - 0.1).abs() < 0.01,
            "{counts:?}"
        );
    }

    #[test]
    fn ras_counts_only_the_window() {
        assert_eq!(ras_count(&[5, 5, 1, 2, 5], 3, 5), 1);
        assert_eq!(ras_count(&[5, 5, 1, 2, 5], 7, 5), 3);
        assert_eq!(ras_count(&[], 7, 5), 0);
    }

    #[test]
    fn device_path_matches_host_path() {
        let mut rng = SeqRng::new(Some(7));
        let (r, v) = (12usize, 1026usize);
        let data: Vec<f32> = (0..r * v).map(|_| (rng.uniform() - 0.5) * 8.0).collect();
        let params: Vec<SamplingParams> = (0..r)
            .map(|i| SamplingParams {
                temperature: [0.0, 0.7, 1.0, 1.3][i % 4],
                top_k: [None, Some(50), Some(1), Some(0)][(i / 2) % 4],
                top_p: [1.0, 0.95, 0.5][i % 3],
            })
            .collect();
        let us: Vec<f32> = (0..r).map(|_| rng.uniform()).collect();
        let t = Tensor::from_vec(data.clone(), (r, v), &Device::Cpu).unwrap();
        let dev = sample_rows_on_device(&t, &params, &us).unwrap();
        let host: Vec<u32> = (0..r)
            .map(|i| sample_row(&data[i * v..(i + 1) * v], &params[i], us[i]))
            .collect();
        assert_eq!(dev, host);
    }

    /// bf16 logits (the model's dtype on a GPU) take the device path too, with the host's result
    /// on the same rounded values (failed on CUDA with "dtype mismatch in div" before).
    #[test]
    fn device_path_takes_bf16_logits() {
        let mut rng = SeqRng::new(Some(9));
        let (r, v) = (6usize, 1026usize);
        let data: Vec<f32> = (0..r * v).map(|_| (rng.uniform() - 0.5) * 8.0).collect();
        let params: Vec<SamplingParams> = (0..r)
            .map(|i| SamplingParams {
                temperature: [1.0, 0.7][i % 2],
                top_k: [Some(50), None][(i / 2) % 2],
                top_p: 0.95,
            })
            .collect();
        let us: Vec<f32> = (0..r).map(|_| rng.uniform()).collect();
        let t = Tensor::from_vec(data, (r, v), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let got = sample_rows_on_device(&t, &params, &us).unwrap();
        let rounded = t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
        let want: Vec<u32> = (0..r)
            .map(|i| sample_row(&rounded[i], &params[i], us[i]))
            .collect();
        assert_eq!(got, want);
    }

    /// `warp` as first written (full sorts over every entry), the semantics the parity tests
    /// pinned: the selection-based top-k and the top-p over finite entries must equal it.
    fn warp_full_sort(scores: &mut [f32], p: &SamplingParams) {
        if p.temperature != 1.0 && p.temperature > 0.0 {
            for v in scores.iter_mut() {
                *v /= p.temperature;
            }
        }
        if let Some(k) = p.top_k() {
            let k = k.min(scores.len());
            let mut sorted: Vec<f32> = scores.to_vec();
            sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            let kth = sorted[k - 1];
            for v in scores.iter_mut() {
                if *v < kth {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        if p.top_p < 1.0 {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
            let mut probs: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
            softmax_in_place(&mut probs);
            let mut cum = 0f32;
            let last = order.len() - 1;
            for (r, &i) in order.iter().enumerate() {
                cum += probs[r];
                if cum <= 1.0 - p.top_p && r != last {
                    scores[i] = f32::NEG_INFINITY;
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn warp_equals_the_full_sort_version(
            row in proptest::collection::vec(-8.0f32..8.0, 1..400),
            dup in 0usize..4,
            k in proptest::option::of(0usize..60),
            top_p in proptest::sample::select(vec![1.0f32, 0.99, 0.95, 0.8, 0.5, 0.1]),
            t in proptest::sample::select(vec![0.5f32, 1.0, 1.3]),
        ) {
            // Repeated values make ties at the k-th entry and in the top-p order.
            let row: Vec<f32> = row.iter().map(|v| (v * dup.max(1) as f32).round() / dup.max(1) as f32).collect();
            let p = SamplingParams { temperature: t, top_k: k, top_p };
            let (mut a, mut b) = (row.clone(), row);
            warp(&mut a, &p);
            warp_full_sort(&mut b, &p);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&a), bits(&b));
        }
    }

    #[test]
    fn rows_wider_than_the_device_sort_are_refused_by_the_device_path() {
        let v = DEVICE_SORT_MAX_COLS + 1;
        let t = Tensor::zeros((1, v), DType::F32, &Device::Cpu).unwrap();
        let p = [SamplingParams {
            temperature: 1.0,
            top_k: Some(50),
            top_p: 0.95,
        }];
        assert!(sample_rows_on_device(&t, &p, &[0.5]).is_err());
        // `sample_rows` takes them (host path).
        assert!(sample_rows(&t, &p, &[0.5]).unwrap()[0] < v as u32);
    }
}
