//! Random tokenizer checkpoints in either on-disk layout, for tests and
//! `higgs-serve dev make-checkpoint`. No reference counterpart: the fixture generator (not
//! published) did the same with the official constructor; weights here follow its recipe
//! (fixtures/README.md "Codec weights"): unit-scale convs, Snake alpha in [0.5, 1.5),
//! `weight_g = ||weight_v|| × U[0.5, 1.5)`-style norms, damped residual branches, and the last
//! decoder conv rescaled so decoded audio is O(1).

use crate::checkpoint::{fold_weight_norm, legacy_to_hf, Weights};
use crate::config::{CheckpointLayout, CodecConfig, HubertConfig, HF_MODEL_TYPE};
use crate::dac::RESIDUAL_DILATIONS;
use crate::error::{CodecError, Result};
use crate::higgs_audio_tokenizer::Codec;
use crate::pth_writer::write_state_dict;
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Model size of a random checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Fixture-like sizes: DAC widths 4 / 64, D 992, HuBERT 32 wide with 2 layers.
    Tiny,
    /// The real widths: DAC 64 / 1024, D 256, HuBERT-base (768 wide, 12 layers, 12 heads).
    Full,
}

/// Every size a random checkpoint needs.
#[derive(Debug, Clone)]
struct Sizes {
    encoder_base: usize,
    decoder_channels: usize,
    latent: usize,
    ratios: Vec<usize>,
    n_q: usize,
    bins: usize,
    codebook_dim: usize,
    target_bandwidths: Vec<f64>,
    hubert_conv_dim: usize,
    hubert_conv_kernel: Vec<usize>,
    hubert_conv_stride: Vec<usize>,
    hubert_hidden: usize,
    hubert_layers: usize,
    hubert_heads: usize,
    hubert_ffn: usize,
    hubert_pos_kernel: usize,
    hubert_pos_groups: usize,
}

impl Sizes {
    fn of(preset: Preset) -> Self {
        let hubert_base = HubertConfig::default();
        match preset {
            Preset::Tiny => Self {
                encoder_base: 4,
                decoder_channels: 64,
                latent: 992,
                ratios: vec![8, 5, 4, 2, 3],
                n_q: 8,
                bins: 1024,
                codebook_dim: 64,
                target_bandwidths: vec![0.5, 1.0, 1.5, 2.0, 4.0],
                hubert_conv_dim: 16,
                hubert_conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
                hubert_conv_stride: hubert_base.conv_stride,
                hubert_hidden: 32,
                hubert_layers: 2,
                hubert_heads: 4,
                hubert_ffn: 64,
                hubert_pos_kernel: 16,
                hubert_pos_groups: 16,
            },
            Preset::Full => Self {
                encoder_base: 64,
                decoder_channels: 1024,
                latent: 256,
                ratios: vec![8, 5, 4, 2, 3],
                n_q: 8,
                bins: 1024,
                codebook_dim: 64,
                target_bandwidths: vec![0.5, 1.0, 1.5, 2.0],
                hubert_conv_dim: 512,
                hubert_conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
                hubert_conv_stride: hubert_base.conv_stride,
                hubert_hidden: 768,
                hubert_layers: 12,
                hubert_heads: hubert_base.num_attention_heads,
                hubert_ffn: 3072,
                hubert_pos_kernel: 128,
                hubert_pos_groups: hubert_base.num_conv_pos_embedding_groups,
            },
        }
    }

    fn hubert_config_json(&self) -> serde_json::Value {
        json!({
            "model_type": "hubert",
            "architectures": ["HubertModel"],
            "hidden_size": self.hubert_hidden,
            "num_hidden_layers": self.hubert_layers,
            "num_attention_heads": self.hubert_heads,
            "intermediate_size": self.hubert_ffn,
            "conv_dim": vec![self.hubert_conv_dim; self.hubert_conv_kernel.len()],
            "conv_kernel": self.hubert_conv_kernel,
            "conv_stride": self.hubert_conv_stride,
            "conv_bias": false,
            "num_feat_extract_layers": self.hubert_conv_kernel.len(),
            "feat_extract_norm": "group",
            "feat_extract_activation": "gelu",
            "feat_proj_layer_norm": true,
            "do_stable_layer_norm": false,
            "num_conv_pos_embeddings": self.hubert_pos_kernel,
            "num_conv_pos_embedding_groups": self.hubert_pos_groups,
            "layer_norm_eps": 1e-5,
            "hidden_act": "gelu",
            "torch_dtype": "float32",
        })
    }
}

/// Seeded generator of tensors in the legacy naming (weight norm as g/v pairs).
struct Gen {
    rng: StdRng,
    tensors: Vec<(String, Tensor)>,
}

impl Gen {
    fn normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        // Box–Muller; keeps the dependency set to `rand` alone.
        (0..n)
            .map(|_| {
                let u1: f32 = self.rng.random::<f32>().max(1e-7);
                let u2: f32 = self.rng.random::<f32>();
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect()
    }

    fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * self.rng.random::<f32>())
            .collect()
    }

    fn push(&mut self, name: String, data: Vec<f32>, shape: &[usize]) -> Result<()> {
        let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
        self.tensors.push((name, t));
        Ok(())
    }

    fn snake(&mut self, prefix: &str, ch: usize) -> Result<()> {
        let a = self.uniform(ch, 0.5, 1.5);
        self.push(format!("{prefix}.alpha"), a, &[1, ch, 1])
    }

    /// Weight-normed conv `[out, in, k]` (norm per output channel) with bias; `gain` is the
    /// effective norm of each output row.
    fn wn_conv(&mut self, prefix: &str, out: usize, inp: usize, k: usize, gain: f32) -> Result<()> {
        let v = self.normal(out * inp * k, 1.0);
        // w = g * v / ||v||, so g is the effective row norm.
        let g: Vec<f32> = (0..out)
            .map(|_| gain * self.rng.random_range(0.75f32..1.25))
            .collect();
        self.push(format!("{prefix}.weight_g"), g, &[out, 1, 1])?;
        self.push(format!("{prefix}.weight_v"), v, &[out, inp, k])?;
        let b = self.normal(out, 0.01);
        self.push(format!("{prefix}.bias"), b, &[out])
    }

    /// Weight-normed transposed conv `[in, out, k]` (norm per input channel) with bias.
    fn wn_conv_t(
        &mut self,
        prefix: &str,
        inp: usize,
        out: usize,
        k: usize,
        gain: f32,
    ) -> Result<()> {
        let v = self.normal(inp * out * k, 1.0);
        let g: Vec<f32> = (0..inp)
            .map(|_| gain * self.rng.random_range(0.75f32..1.25))
            .collect();
        self.push(format!("{prefix}.weight_g"), g, &[inp, 1, 1])?;
        self.push(format!("{prefix}.weight_v"), v, &[inp, out, k])?;
        let b = self.normal(out, 0.01);
        self.push(format!("{prefix}.bias"), b, &[out])
    }

    /// Plain conv `[out, in, k]`, N(0, gain²/fan_in), optional bias.
    fn conv(
        &mut self,
        prefix: &str,
        out: usize,
        inp: usize,
        k: usize,
        gain: f32,
        bias: bool,
    ) -> Result<()> {
        let w = self.normal(out * inp * k, gain / ((inp * k) as f32).sqrt());
        self.push(format!("{prefix}.weight"), w, &[out, inp, k])?;
        if bias {
            let b = self.normal(out, 0.01);
            self.push(format!("{prefix}.bias"), b, &[out])?;
        }
        Ok(())
    }

    fn linear(&mut self, prefix: &str, out: usize, inp: usize) -> Result<()> {
        let w = self.normal(out * inp, 1.0 / (inp as f32).sqrt());
        self.push(format!("{prefix}.weight"), w, &[out, inp])?;
        let b = self.normal(out, 0.02);
        self.push(format!("{prefix}.bias"), b, &[out])
    }

    fn norm(&mut self, prefix: &str, dim: usize) -> Result<()> {
        let w = self.normal(dim, 0.1).into_iter().map(|x| 1.0 + x).collect();
        self.push(format!("{prefix}.weight"), w, &[dim])?;
        let b = self.normal(dim, 0.1);
        self.push(format!("{prefix}.bias"), b, &[dim])
    }

    fn residual_unit(&mut self, prefix: &str, ch: usize) -> Result<()> {
        self.snake(&format!("{prefix}.block.0"), ch)?;
        self.wn_conv(&format!("{prefix}.block.1"), ch, ch, 7, 1.0)?;
        self.snake(&format!("{prefix}.block.2"), ch)?;
        // Damped branch (×0.3) so the residual stack stays near unit scale.
        self.wn_conv(&format!("{prefix}.block.3"), ch, ch, 1, 0.3)
    }
}

fn build_legacy_tensors(s: &Sizes, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        tensors: Vec::new(),
    };
    let n = s.ratios.len();
    // DAC encoder.
    g.wn_conv("encoder.block.0", s.encoder_base, 1, 7, 1.0)?;
    let mut ch = s.encoder_base;
    for (i, st) in s.ratios.iter().enumerate() {
        let p = format!("encoder.block.{}", i + 1);
        for r in 0..RESIDUAL_DILATIONS.len() {
            g.residual_unit(&format!("{p}.block.{r}"), ch)?;
        }
        g.snake(&format!("{p}.block.{}", RESIDUAL_DILATIONS.len()), ch)?;
        g.wn_conv(
            &format!("{p}.block.{}", RESIDUAL_DILATIONS.len() + 1),
            2 * ch,
            ch,
            2 * st,
            1.0,
        )?;
        ch *= 2;
    }
    g.snake(&format!("encoder.block.{}", n + 1), ch)?;
    g.wn_conv(&format!("encoder.block.{}", n + 2), s.latent, ch, 3, 1.0)?;
    // DAC decoder.
    g.wn_conv("decoder_2.model.0", s.decoder_channels, s.latent, 7, 1.0)?;
    let mut ch = s.decoder_channels;
    for (i, st) in s.ratios.iter().enumerate() {
        let p = format!("decoder_2.model.{}", i + 1);
        g.snake(&format!("{p}.block.0"), ch)?;
        // Each output sample sums 2 taps over `ch` inputs: gain sqrt(s/2) keeps unit variance.
        g.wn_conv_t(
            &format!("{p}.block.1"),
            ch,
            ch / 2,
            2 * st,
            (*st as f32 / 2.0).sqrt(),
        )?;
        for r in 0..RESIDUAL_DILATIONS.len() {
            g.residual_unit(&format!("{p}.block.{}", r + 2), ch / 2)?;
        }
        ch /= 2;
    }
    g.snake(&format!("decoder_2.model.{}", n + 1), ch)?;
    g.wn_conv(&format!("decoder_2.model.{}", n + 2), 1, ch, 7, 1.0)?;
    // HuBERT.
    let sm = "semantic_model";
    let h = s.hubert_hidden;
    let m = g.uniform(h, 0.0, 1.0);
    g.push(format!("{sm}.masked_spec_embed"), m, &[h])?;
    let mut inp = 1;
    for (i, k) in s.hubert_conv_kernel.iter().enumerate() {
        let p = format!("{sm}.feature_extractor.conv_layers.{i}");
        g.conv(&format!("{p}.conv"), s.hubert_conv_dim, inp, *k, 1.0, false)?;
        if i == 0 {
            g.norm(&format!("{p}.layer_norm"), s.hubert_conv_dim)?;
        }
        inp = s.hubert_conv_dim;
    }
    g.norm(
        &format!("{sm}.feature_projection.layer_norm"),
        s.hubert_conv_dim,
    )?;
    g.linear(
        &format!("{sm}.feature_projection.projection"),
        h,
        s.hubert_conv_dim,
    )?;
    let pc = format!("{sm}.encoder.pos_conv_embed.conv");
    let b = g.normal(h, 0.02);
    g.push(format!("{pc}.bias"), b, &[h])?;
    let k = s.hubert_pos_kernel;
    // weight_norm(dim=2): g holds one norm per tap; sqrt(out/K) keeps unit output variance.
    let gain = (h as f32 / k as f32).sqrt();
    let gp = g.uniform(k, 0.75 * gain, 1.25 * gain);
    g.push(
        format!("{pc}.parametrizations.weight.original0"),
        gp,
        &[1, 1, k],
    )?;
    let v = g.normal(h * (h / s.hubert_pos_groups) * k, 1.0);
    g.push(
        format!("{pc}.parametrizations.weight.original1"),
        v,
        &[h, h / s.hubert_pos_groups, k],
    )?;
    g.norm(&format!("{sm}.encoder.layer_norm"), h)?;
    for l in 0..s.hubert_layers {
        let p = format!("{sm}.encoder.layers.{l}");
        for proj in ["k_proj", "v_proj", "q_proj", "out_proj"] {
            g.linear(&format!("{p}.attention.{proj}"), h, h)?;
        }
        g.norm(&format!("{p}.layer_norm"), h)?;
        g.linear(
            &format!("{p}.feed_forward.intermediate_dense"),
            s.hubert_ffn,
            h,
        )?;
        g.linear(&format!("{p}.feed_forward.output_dense"), h, s.hubert_ffn)?;
        g.norm(&format!("{p}.final_layer_norm"), h)?;
    }
    // Semantic encoder (2 blocks of 2 residual units, reference defaults).
    let es = "encoder_semantic";
    g.conv(&format!("{es}.conv.conv"), h, h, 3, 1.0, false)?;
    for b in 0..2 {
        for r in 0..2 {
            let p = format!("{es}.conv_blocks.{b}.res_units.{r}");
            g.conv(&format!("{p}.conv1.conv"), h, h, 3, 1.0, false)?;
            g.conv(&format!("{p}.conv2"), h, h, 1, 0.3, false)?;
        }
        g.conv(
            &format!("{es}.conv_blocks.{b}.conv.conv"),
            h,
            h,
            3,
            1.0,
            true,
        )?;
    }
    // Quantizer.
    let dim = s.latent + h;
    for i in 0..s.n_q {
        let p = format!("quantizer.vq.layers.{i}");
        g.linear(&format!("{p}.project_in"), s.codebook_dim, dim)?;
        g.linear(&format!("{p}.project_out"), dim, s.codebook_dim)?;
        g.push(format!("{p}._codebook.inited"), vec![1.0], &[1])?;
        g.push(
            format!("{p}._codebook.cluster_size"),
            vec![1.0; s.bins],
            &[s.bins],
        )?;
        let e = g.normal(s.bins * s.codebook_dim, 1.0);
        g.push(
            format!("{p}._codebook.embed"),
            e.clone(),
            &[s.bins, s.codebook_dim],
        )?;
        g.push(
            format!("{p}._codebook.embed_avg"),
            e,
            &[s.bins, s.codebook_dim],
        )?;
    }
    g.linear("fc_prior", dim, dim)?;
    // Sum of n_q unit-variance codebook vectors: scale fc_post2 so the decoder input is ~unit.
    let w = g.normal(s.latent * dim, 1.0 / ((dim * s.n_q) as f32).sqrt());
    g.push("fc_post2.weight".into(), w, &[s.latent, dim])?;
    let b = g.normal(s.latent, 0.02);
    g.push("fc_post2.bias".into(), b, &[s.latent])?;
    // The semantic reconstruction branch (`decoder_semantic`, `fc_post1`): a training target that
    // no forward here uses, but part of every real checkpoint and of transformers'
    // `HiggsAudioV2TokenizerModel`. Generated last, so the tensors above keep their values.
    let ds = "decoder_semantic";
    g.conv(&format!("{ds}.conv1.conv"), h, h, 3, 1.0, false)?;
    for b in 0..2 {
        // Strides (1, 1): each block is a k3 conv with bias, then 2 residual units.
        g.conv(
            &format!("{ds}.conv_blocks.{b}.conv.conv"),
            h,
            h,
            3,
            1.0,
            true,
        )?;
        for r in 0..2 {
            let p = format!("{ds}.conv_blocks.{b}.res_units.{r}");
            g.conv(&format!("{p}.conv1.conv"), h, h, 3, 1.0, false)?;
            g.conv(&format!("{p}.conv2"), h, h, 1, 0.3, false)?;
        }
    }
    g.conv(&format!("{ds}.conv2.conv"), h, h, 3, 1.0, false)?;
    g.linear("fc_post1", h, dim)?;
    Ok(g.tensors)
}

fn legacy_config(s: &Sizes) -> CodecConfig {
    CodecConfig {
        layout: CheckpointLayout::Legacy,
        sample_rate: 24000,
        semantic_sample_rate: 16000,
        ratios: s.ratios.clone(),
        n_q: Some(s.n_q),
        codebook_size: s.bins,
        codebook_dim: Some(s.codebook_dim),
        semantic_hop: s.hubert_conv_stride.iter().product(),
        hubert: HubertConfig {
            num_attention_heads: s.hubert_heads,
            layer_norm_eps: 1e-5,
            conv_stride: s.hubert_conv_stride.clone(),
            num_conv_pos_embedding_groups: s.hubert_pos_groups,
        },
    }
}

/// Rescales the last decoder conv so that decoding random codes gives RMS ≈ 0.1.
fn calibrate_output(tensors: &mut [(String, Tensor)], s: &Sizes, seed: u64) -> Result<()> {
    let cfg = legacy_config(s);
    let w = Weights::from_tensors(
        tensors.iter().cloned(),
        PathBuf::from("<in-memory random checkpoint>"),
        CheckpointLayout::Legacy,
        s.ratios.len(),
        &Device::Cpu,
    )?;
    let codec = Codec::from_weights(cfg, &w, &Device::Cpu, &crate::CodecOptions::default())?;
    let frames = 4;
    let mut rng = StdRng::seed_from_u64(seed ^ 0xdec0de);
    let codes: Vec<u32> = (0..s.n_q * frames)
        .map(|_| rng.random_range(0..s.bins as u32))
        .collect();
    let codes = Tensor::from_vec(codes, (s.n_q, frames), &Device::Cpu)?;
    let wav = codec.decode(&codes)?;
    let rms = (wav.iter().map(|x| x * x).sum::<f32>() / wav.len().max(1) as f32).sqrt();
    if !rms.is_finite() || rms == 0.0 {
        return Err(CodecError::Input(format!(
            "random checkpoint decodes to RMS {rms}"
        )));
    }
    let last = format!("decoder_2.model.{}", s.ratios.len() + 2);
    let factor = 0.1 / rms;
    for (name, t) in tensors.iter_mut() {
        if *name == format!("{last}.weight_g") {
            *t = (&*t * f64::from(factor))?;
        }
        if *name == format!("{last}.bias") {
            *t = t.zeros_like()?;
        }
    }
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CodecError::Config {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(|source| CodecError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a random tokenizer checkpoint into `dir` (created if needed):
///
/// * [`CheckpointLayout::Legacy`]: `config.json` (legacy keys) + `model.pth` (torch zip pickle
///   with weight-norm `weight_g`/`weight_v` pairs; HuBERT's positional conv as
///   `parametrizations.weight.original0/1`), plus `hubert_base/config.json` for the tiny preset
///   (the full preset uses HuBERT-base values, which the loader assumes when it is absent).
/// * [`CheckpointLayout::Hf`]: transformers-native `config.json` + `model.safetensors` as
///   transformers' converter writes it: `weight_g`/`weight_v` folded, tensors renamed, HuBERT's
///   positional conv as `parametrizations.weight.original0/1`, and `target_bandwidths` ending
///   where transformers builds exactly the quantizers written. `HiggsAudioV2TokenizerModel.
///   from_pretrained` loads it with no missing or unexpected keys
///   (`tests/data/transformers_keys_codec.txt`).
///
/// The same `preset` and `seed` give the same weights in both layouts.
pub fn write_random_checkpoint(
    dir: &Path,
    preset: Preset,
    layout: CheckpointLayout,
    seed: u64,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| CodecError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let s = Sizes::of(preset);
    let mut tensors = build_legacy_tensors(&s, seed)?;
    calibrate_output(&mut tensors, &s, seed)?;
    let hop: usize = s.ratios.iter().product();
    match layout {
        CheckpointLayout::Legacy => {
            write_json(
                &dir.join("config.json"),
                &json!({
                    "n_filters": 32,
                    "D": s.latent,
                    "codebook_dim": s.codebook_dim,
                    "target_bandwidths": s.target_bandwidths,
                    "ratios": s.ratios,
                    "sample_rate": 24000,
                    "bins": s.bins,
                    "n_q": s.n_q,
                    "semantic_techer": "hubert_base_general",
                }),
            )?;
            if preset == Preset::Tiny {
                let hd = dir.join("hubert_base");
                std::fs::create_dir_all(&hd).map_err(|source| CodecError::Io {
                    path: hd.clone(),
                    source,
                })?;
                write_json(&hd.join("config.json"), &s.hubert_config_json())?;
            }
            write_state_dict(&dir.join("model.pth"), "model", &tensors)
        }
        CheckpointLayout::Hf => {
            write_json(
                &dir.join("config.json"),
                &json!({
                    "model_type": HF_MODEL_TYPE,
                    "architectures": ["HiggsAudioV2TokenizerModel"],
                    "sample_rate": 24000,
                    "semantic_sample_rate": 16000,
                    "downsample_factor": s.hubert_conv_stride.iter().product::<usize>(),
                    "codebook_size": s.bins,
                    "codebook_dim": s.codebook_dim,
                    "target_bandwidths": hf_target_bandwidths(&s)?,
                    "kernel_size": 3,
                    "channel_ratios": [1, 1],
                    "strides": [1, 1],
                    "block_dilations": [1, 1],
                    "unit_kernel_size": 3,
                    "acoustic_model_config": {
                        "model_type": "dac",
                        "encoder_hidden_size": s.encoder_base,
                        "downsampling_ratios": s.ratios,
                        "decoder_hidden_size": s.decoder_channels,
                        "upsampling_ratios": s.ratios,
                        "hidden_size": s.latent,
                        "hop_length": hop,
                    },
                    "semantic_model_config": s.hubert_config_json(),
                }),
            )?;
            let folded = fold_all(&tensors, s.ratios.len())?;
            candle_core::safetensors::save(&folded, dir.join("model.safetensors"))?;
            Ok(())
        }
    }
}

/// Quantizers transformers builds for `target_bandwidths` (`HiggsAudioV2TokenizerConfig.
/// num_quantizers`): `1000 · last bandwidth // (frame_rate · ceil(log2 bins))`.
fn num_quantizers(target_bandwidths: &[f64], frame_rate: usize, bins: usize) -> usize {
    let nbits = usize::BITS - bins.saturating_sub(1).leading_zeros();
    let last = target_bandwidths.last().copied().unwrap_or(0.0);
    (1000.0 * last / (frame_rate * nbits as usize).max(1) as f64).floor() as usize
}

/// The preset's bandwidths up to the one that needs exactly `n_q` quantizers. transformers
/// builds as many quantizers as the last bandwidth needs and the legacy list of the tiny preset
/// (the fixture's) goes on to 4 kbps = 16; the legacy layout states `n_q` itself.
fn hf_target_bandwidths(s: &Sizes) -> Result<Vec<f64>> {
    let hop: usize = s.ratios.iter().product();
    let frame_rate = 24000usize.div_ceil(hop);
    let n = |bws: &[f64]| num_quantizers(bws, frame_rate, s.bins);
    let end = (1..=s.target_bandwidths.len())
        .rfind(|&k| n(&s.target_bandwidths[..k]) <= s.n_q)
        .unwrap_or(0);
    let bws = s.target_bandwidths[..end].to_vec();
    if n(&bws) != s.n_q {
        return Err(CodecError::Input(format!(
            "no prefix of target_bandwidths {:?} gives {} quantizers",
            s.target_bandwidths, s.n_q
        )));
    }
    Ok(bws)
}

/// Legacy tensors → transformers-native ones, as transformers' converter
/// (`convert_higgs_audio_v2_tokenizer_to_hf.py`) makes them: `weight_g`/`weight_v` folded into
/// `weight`, names mapped. HuBERT's positional conv keeps its weight-norm parametrization
/// (`parametrizations.weight.original0/1`): transformers' `HubertPositionalConvEmbedding` is
/// built with one and expects those two tensors. `masked_spec_embed` (masking for training) is
/// left out: transformers' HuBERT has it only when masking is configured, and ignores it.
fn fold_all(
    tensors: &[(String, Tensor)],
    n_blocks: usize,
) -> Result<std::collections::HashMap<String, Tensor>> {
    let lookup: std::collections::HashMap<&str, &Tensor> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::collections::HashMap::new();
    for (name, t) in tensors {
        if name == "semantic_model.masked_spec_embed" {
            continue;
        }
        if let Some(prefix) = name.strip_suffix(".weight_g") {
            let v_name = format!("{prefix}.weight_v");
            let v = lookup
                .get(v_name.as_str())
                .ok_or_else(|| CodecError::MissingTensor {
                    name: v_name.clone(),
                    path: PathBuf::from("<in-memory random checkpoint>"),
                })?;
            let w = fold_weight_norm(t, v)?;
            out.insert(legacy_to_hf(&format!("{prefix}.weight"), n_blocks), w);
        } else if !name.ends_with(".weight_v") {
            // (a `weight_v` was folded together with its `weight_g`)
            out.insert(legacy_to_hf(name, n_blocks), t.to_dtype(DType::F32)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_bandwidths_ask_transformers_for_the_quantizers_written() {
        for preset in [Preset::Tiny, Preset::Full] {
            let s = Sizes::of(preset);
            let bws = hf_target_bandwidths(&s).unwrap_or_default();
            // 8 codebooks × 25 frames/s × 10 bits = 2 kbps.
            assert_eq!(bws.last().copied(), Some(2.0), "{preset:?}");
            assert_eq!(num_quantizers(&bws, 25, s.bins), s.n_q, "{preset:?}");
        }
        // The tiny preset's legacy list (the fixture's) goes on to 4 kbps: 16 quantizers.
        assert_eq!(num_quantizers(&[0.5, 1.0, 1.5, 2.0, 4.0], 25, 1024), 16);
    }
}
