//! The tokenizer model: `audio_processing/higgs_audio_tokenizer.py` (`HiggsAudioTokenizer`:
//! `get_regress_target`, `_xcodec_encode`, `decode`; `load_higgs_audio_tokenizer`).

use crate::checkpoint::Weights;
use crate::config::CodecConfig;
use crate::dac::{Decoder, DecoderOp, DecoderState, Encoder, Mark, StepSpan};
use crate::error::{CodecError, Result};
use crate::hubert::Hubert;
use crate::layers::linear;
use crate::options::CodecOptions;
use crate::quantizer::ResidualVectorQuantizer;
use crate::resample::resample;
use crate::semantic_module::SemanticEncoder;
use candle_core::{DType, Device, Module, Tensor};
use std::path::Path;

/// The Higgs audio tokenizer: 24 kHz mono audio ↔ `[n_q, frames]` codes.
#[derive(Debug, Clone)]
pub struct Codec {
    config: CodecConfig,
    encoder: Encoder,
    decoder: Decoder,
    semantic_model: Hubert,
    encoder_semantic: SemanticEncoder,
    quantizer: ResidualVectorQuantizer,
    fc_prior: candle_nn::Linear,
    fc_post2: candle_nn::Linear,
    device: Device,
}

/// Every intermediate of one [`Codec::encode_traced`] call, channels-first without the batch
/// axis (the layout of the reference goldens).
#[derive(Debug, Clone)]
pub struct EncodeTrace {
    /// Input of the semantic branch after resampling to the semantic rate, `[M]`.
    pub semantic_resampled: Tensor,
    /// All HuBERT hidden states, `[num_layers + 1, T_h, S]`.
    pub semantic_hidden_states: Tensor,
    /// Mean of the hidden states after the step-down, `[S, T_s]`.
    pub semantic_features: Tensor,
    /// Output of the semantic encoder, `[S', T_s]`.
    pub e_semantic: Tensor,
    /// Acoustic encoder on the unpadded wave, `[D, T_a]`.
    pub e_acoustic_first_pass: Tensor,
    /// Acoustic encoder on the re-padded wave when frame counts differed, `[D, T_a']`.
    pub e_acoustic_padded_pass: Option<Tensor>,
    /// `fc_prior` output = RVQ input, `[dim, T]`.
    pub quantizer_input: Tensor,
    /// Residual fed to each RVQ layer, `[n_q, dim, T]`.
    pub vq_residual_inputs: Tensor,
    /// `project_out(embed[code])` of each RVQ layer, `[n_q, dim, T]`.
    pub vq_quantized: Tensor,
    /// Codes `[n_q, T]` (u32), codebook 0 first.
    pub codes: Tensor,
}

/// Intermediates of [`Codec::decode_traced`], channels-first without the batch axis.
#[derive(Debug, Clone)]
pub struct DecodeTrace {
    /// Sum over codebooks of `project_out(embed[code])`, `[dim, T]`.
    pub quantized: Tensor,
    /// `fc_post2` output, `[T, D]` (channels-last, as the golden stores it).
    pub fc_post2_output: Tensor,
    /// Decoded audio `[T * hop]`.
    pub waveform: Tensor,
}

impl Codec {
    /// Loads a tokenizer directory in either layout (detected from `config.json`), with the
    /// default [`CodecOptions`].
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_with(dir, device, &CodecOptions::default())
    }

    /// [`Self::load`] with explicit options.
    pub fn load_with(dir: &Path, device: &Device, opts: &CodecOptions) -> Result<Self> {
        let config = CodecConfig::from_dir(dir)?;
        let weights = Weights::load(dir, config.layout, config.ratios.len(), device)?;
        Self::from_weights(config, &weights, device, opts)
    }

    pub(crate) fn from_weights(
        config: CodecConfig,
        w: &Weights,
        device: &Device,
        opts: &CodecOptions,
    ) -> Result<Self> {
        let encoder = Encoder::load(w, &config.ratios, opts)?;
        let d = encoder.latent_dim();
        let semantic_model = Hubert::load(w, &config.hubert)?;
        let encoder_semantic = SemanticEncoder::load(w, semantic_model.hidden_size())?;
        let s = encoder_semantic.out_channels();
        let fc_prior = linear(w, "fc_prior", None, Some(d + s))?;
        let dim = fc_prior.weight().dim(0)?;
        let quantizer = ResidualVectorQuantizer::load(
            w,
            config.n_q,
            config.codebook_size,
            config.codebook_dim,
        )?;
        if quantizer.dim() != dim {
            return Err(CodecError::TensorShape {
                name: w.file_name("quantizer.vq.layers.0.project_in.weight"),
                path: w.path().to_path_buf(),
                expected: format!("[?, {dim}] (fc_prior output size)"),
                actual: vec![quantizer.codebook_dim(), quantizer.dim()],
            });
        }
        let fc_post2 = linear(w, "fc_post2", Some(d), Some(dim))?;
        let decoder = Decoder::load(w, &config.ratios, d, opts)?;
        Ok(Self {
            config,
            encoder,
            decoder,
            semantic_model,
            encoder_semantic,
            quantizer,
            fc_prior,
            fc_post2,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Audio sample rate (24000 for the real model).
    pub fn sample_rate(&self) -> usize {
        self.config.sample_rate
    }

    /// Samples per code frame (960).
    pub fn hop_length(&self) -> usize {
        self.config.hop_length()
    }

    /// Code frames per second (25).
    pub fn frame_rate(&self) -> usize {
        self.config.frame_rate()
    }

    /// Number of codebooks `n_q` (8).
    pub fn num_codebooks(&self) -> usize {
        self.quantizer.num_quantizers()
    }

    /// Entries per codebook (`bins`, 1024). Note: the reference's `codebook_size` property returns
    /// the quantizer width instead; see [`Codec::quantizer_dim`].
    pub fn codebook_size(&self) -> usize {
        self.quantizer.codebook_size()
    }

    /// Width of the quantized latent (`D + semantic_dim`, 1024 for the real model).
    pub fn quantizer_dim(&self) -> usize {
        self.quantizer.dim()
    }

    /// One-sided decoder receptive field in frames (an upper bound from the architecture).
    pub fn decoder_receptive_field_frames(&self) -> usize {
        self.decoder.receptive_field_frames()
    }

    /// Frames [`Codec::encode`] returns for `n` samples, by the reference's arithmetic: the
    /// semantic branch's length (resample, pad, HuBERT convs, step-down) against the acoustic
    /// encoder's, re-encoding with padding when they differ and keeping the shorter. `None` when
    /// the signal is too short to encode.
    pub fn encoded_frames(&self, n: usize) -> Option<usize> {
        let (sr, ssr) = (self.config.sample_rate, self.config.semantic_sample_rate);
        let m = if sr == ssr { n } else { (ssr * n).div_ceil(sr) };
        let half_hop = self.config.semantic_hop / 2;
        let t_h = self.semantic_model.output_len(m + 2 * half_hop)?;
        let factor = self.config.semantic_downsample_factor().max(1);
        let t_s = t_h.div_ceil(factor);
        let t_a = self.encoder.output_len(n)?;
        if t_a == t_s {
            Some(t_a)
        } else {
            Some(self.encoder.output_len(n + 2 * half_hop * factor)?.min(t_s))
        }
    }

    /// Encodes 24 kHz (i.e. [`Codec::sample_rate`]) mono samples → codes `[n_q, frames]` (u32).
    pub fn encode(&self, samples: &[f32]) -> Result<Tensor> {
        Ok(self.encode_impl(samples, false)?.codes)
    }

    /// [`Codec::encode`] returning every intermediate (for parity tests and debugging).
    pub fn encode_traced(&self, samples: &[f32]) -> Result<EncodeTrace> {
        self.encode_impl(samples, true)
    }

    fn encode_impl(&self, samples: &[f32], trace: bool) -> Result<EncodeTrace> {
        if samples.is_empty() {
            return Err(CodecError::Input("cannot encode an empty signal".into()));
        }
        if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
            return Err(CodecError::Input(format!("sample {i} is not finite")));
        }
        let n = samples.len();
        let x = Tensor::from_slice(samples, (1, n), &self.device)?;

        // get_regress_target: resample, pad half a HuBERT hop each side, mean of all hidden states.
        let sem = resample(
            &x,
            self.config.sample_rate,
            self.config.semantic_sample_rate,
        )?;
        let half_hop = self.config.semantic_hop / 2;
        let sem_in = sem.pad_with_zeros(1, half_hop, half_hop)?;
        self.check_semantic_len(n, sem_in.dim(1)?)?;
        let states = self.semantic_model.forward_hidden_states(&sem_in)?;
        let stacked = Tensor::stack(&states, 1)?; // [1, L+1, T_h, S]
        let mean = stacked.mean(1)?; // [1, T_h, S]
        let factor = self.config.semantic_downsample_factor();
        let target = if factor > 1 {
            let t_h = mean.dim(1)?;
            let idx = Tensor::arange_step(0u32, t_h as u32, factor as u32, &self.device)?;
            mean.index_select(&idx, 1)?
        } else {
            mean
        };
        let features = target.transpose(1, 2)?.contiguous()?; // [1, S, T_s]
        let e_semantic = self.encoder_semantic.forward(&features)?;

        // _xcodec_encode: acoustic branch, re-run on a padded wave when frame counts differ.
        let e_acoustic_first = self.encode_acoustic(&x, 0)?;
        let t_s = e_semantic.dim(2)?;
        let mut e_acoustic = e_acoustic_first.clone();
        let mut padded_pass = None;
        if e_acoustic.dim(2)? != t_s {
            let pad = half_hop * factor;
            e_acoustic = self.encode_acoustic(&x, pad)?;
            padded_pass = Some(e_acoustic.clone());
        }
        let t = e_acoustic.dim(2)?.min(t_s);
        let e_acoustic = e_acoustic.narrow(2, 0, t)?;
        let e_semantic_t = e_semantic.narrow(2, 0, t)?;

        let e = Tensor::cat(&[&e_acoustic, &e_semantic_t], 1)?.transpose(1, 2)?;
        let e = self.fc_prior.forward(&e.contiguous()?)?; // [1, T, dim]
        let (codes, rvq) = self.quantizer.encode_traced(&e, trace)?;
        let codes = codes.squeeze(0)?;

        let empty = || Tensor::zeros(0, DType::F32, &Device::Cpu);
        let first = |t: Tensor| -> Result<Tensor> { Ok(t.squeeze(0)?) };
        let cf = |ts: &[Tensor]| -> Result<Tensor> {
            // [n_q][1, T, dim] → [n_q, dim, T]
            Ok(Tensor::cat(ts, 0)?.transpose(1, 2)?.contiguous()?)
        };
        if !trace {
            return Ok(EncodeTrace {
                semantic_resampled: empty()?,
                semantic_hidden_states: empty()?,
                semantic_features: empty()?,
                e_semantic: empty()?,
                e_acoustic_first_pass: empty()?,
                e_acoustic_padded_pass: None,
                quantizer_input: empty()?,
                vq_residual_inputs: empty()?,
                vq_quantized: empty()?,
                codes,
            });
        }
        let rvq = rvq.ok_or_else(|| CodecError::Input("missing RVQ trace".into()))?;
        Ok(EncodeTrace {
            semantic_resampled: first(sem)?,
            semantic_hidden_states: first(stacked)?,
            semantic_features: first(features)?,
            e_semantic: first(e_semantic)?,
            e_acoustic_first_pass: first(e_acoustic_first)?,
            e_acoustic_padded_pass: padded_pass.map(first).transpose()?,
            quantizer_input: first(e.transpose(1, 2)?.contiguous()?)?,
            vq_residual_inputs: cf(&rvq.residual_inputs)?,
            vq_quantized: cf(&rvq.quantized)?,
            codes,
        })
    }

    /// DAC encoder on `x` (`[1, N]`) zero-padded by `pad` samples per side → `[1, D, frames]`.
    fn encode_acoustic(&self, x: &Tensor, pad: usize) -> Result<Tensor> {
        let n = x.dim(1)? + 2 * pad;
        if self.encoder.output_len(n).unwrap_or(0) == 0 {
            return Err(CodecError::Input(format!(
                "signal of {n} samples is too short for the acoustic encoder"
            )));
        }
        let x = if pad > 0 {
            x.pad_with_zeros(1, pad, pad)?
        } else {
            x.clone()
        };
        Ok(self.encoder.forward(&x.unsqueeze(1)?)?)
    }

    fn check_semantic_len(&self, n: usize, sem_len: usize) -> Result<()> {
        if self.semantic_model.output_len(sem_len).unwrap_or(0) == 0 {
            return Err(CodecError::Input(format!(
                "signal of {n} samples is too short for the semantic (HuBERT) branch"
            )));
        }
        Ok(())
    }

    /// Decodes codes `[n_q, T]` → `T * hop` samples at [`Codec::sample_rate`].
    pub fn decode(&self, codes: &Tensor) -> Result<Vec<f32>> {
        let wav = self.decode_batch(&codes.unsqueeze(0)?)?;
        Ok(wav.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }

    /// Decodes a batch of equally long code sequences `[B, n_q, T]` → `[B, T * hop]` (on the
    /// codec device).
    pub fn decode_batch(&self, codes: &Tensor) -> Result<Tensor> {
        self.decode_batch_marked(codes, &mut |_| Ok(()))
    }

    /// [`Codec::decode_batch`] calling `mark` after each decoder op ([`Decoder::forward_marked`]);
    /// the quantizer and `fc_post2` are marked [`DecoderOp::Quantizer`].
    pub fn decode_batch_marked(&self, codes: &Tensor, mark: &mut Mark<'_>) -> Result<Tensor> {
        let (_, post) = self.decode_latent(codes)?;
        mark(DecoderOp::Quantizer)?;
        let wav = self.decoder.forward_marked(&post, mark)?;
        Ok(wav.squeeze(1)?)
    }

    /// Decodes windows `[B, n_q, left + n_new + right]` and keeps only the samples of the
    /// `n_new` frames after `left`: `[B, n_new * hop]`. The building block of streaming decode;
    /// several streams batch together when their windows have the same size.
    pub fn decode_window(&self, codes: &Tensor, left: usize, n_new: usize) -> Result<Tensor> {
        let (_, _, t) = codes.dims3()?;
        if left + n_new > t {
            return Err(CodecError::Input(format!(
                "window of {t} frames cannot hold {left} context + {n_new} new frames"
            )));
        }
        let hop = self.hop_length();
        Ok(self
            .decode_batch(codes)?
            .narrow(1, left * hop, n_new * hop)?)
    }

    /// The state of `batch` streams about to start layer-wise streaming decode
    /// ([`Codec::decode_step`]).
    pub fn initial_step_state(&self, batch: usize) -> Result<DecoderState> {
        self.decoder.initial_state(batch, &self.device)
    }

    /// How many samples [`Codec::decode_step`]'s audio lags its frames (see there).
    pub fn step_delay_samples(&self) -> usize {
        self.decoder.step_delay()
    }

    /// Frames of padding after a stream's last frame that flush its delayed tail: a step
    /// covering frames up to `total + step_flush_frames()` ends the stream's audio.
    pub fn step_flush_frames(&self) -> usize {
        self.step_delay_samples().div_ceil(self.hop_length())
    }

    /// Layer-wise streaming decode: the next `n` frames `[B, n_q, n]` of `B` streams →
    /// `[B, n * hop]` samples; row `b`'s samples start at stream sample
    /// `spans[b].first_frame * hop - step_delay_samples()` (drop those before 0 and from
    /// `total_frames * hop` on). Each decoder layer carries its last inputs in `state` (one row
    /// per stream, from [`Codec::initial_step_state`]), so a step decodes its new frames only —
    /// no context frames decoded twice as with [`Codec::decode_window`] — and the samples equal
    /// the one-shot decode's up to summation order. Frames past a stream's `total_frames` (its
    /// flush) may hold any valid codes: they are padding.
    pub fn decode_step(
        &self,
        codes: &Tensor,
        state: &mut DecoderState,
        spans: &[StepSpan],
    ) -> Result<Tensor> {
        if state.batch() != codes.dims().first().copied().unwrap_or(0) {
            return Err(CodecError::Input(format!(
                "a step of {:?} codes for a state of {} streams",
                codes.dims(),
                state.batch()
            )));
        }
        let (_, post) = self.decode_latent(codes)?;
        Ok(self.decoder.step(&post, state, spans)?.squeeze(1)?)
    }

    /// [`Codec::decode`] returning the intermediates.
    pub fn decode_traced(&self, codes: &Tensor) -> Result<DecodeTrace> {
        let (quantized, post) = self.decode_latent(&codes.unsqueeze(0)?)?;
        let wav = self.decoder.forward(&post)?;
        Ok(DecodeTrace {
            quantized: quantized.squeeze(0)?.t()?.contiguous()?,
            fc_post2_output: post.squeeze(0)?.t()?.contiguous()?,
            waveform: wav.flatten_all()?,
        })
    }

    /// Validates codes and returns (quantized `[B, T, dim]`, decoder input `[B, D, T]`).
    fn decode_latent(&self, codes: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, n_q, t) = codes.dims3()?;
        if n_q != self.num_codebooks() {
            return Err(CodecError::Input(format!(
                "codes have {n_q} codebooks, the codec has {}",
                self.num_codebooks()
            )));
        }
        if t == 0 {
            return Err(CodecError::Input("cannot decode zero frames".into()));
        }
        if codes.dtype().is_float() {
            return Err(CodecError::Input(format!(
                "codes must be integers, got {:?}",
                codes.dtype()
            )));
        }
        let wide = codes.to_dtype(DType::I64)?;
        let lo = wide.min_all()?.to_scalar::<i64>()?;
        let hi = wide.max_all()?.to_scalar::<i64>()?;
        if lo < 0 || hi >= self.codebook_size() as i64 {
            return Err(CodecError::Input(format!(
                "codes must lie in [0, {}), got range [{lo}, {hi}]",
                self.codebook_size()
            )));
        }
        let codes = codes.to_device(&self.device)?;
        let quantized = self.quantizer.decode(&codes)?;
        let post = self
            .fc_post2
            .forward(&quantized)?
            .transpose(1, 2)?
            .contiguous()?;
        Ok((quantized, post))
    }
}
