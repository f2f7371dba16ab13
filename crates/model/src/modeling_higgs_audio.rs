//! The Higgs Audio v2 generation model, mirroring `boson_multimodal/model/higgs_audio/
//! modeling_higgs_audio.py` and `audio_head.py` (boson-ai/higgs-audio @ f04f5df), reference spec §3.
//!
//! The forward pass is *packed*: the new positions of several sequences are concatenated into one
//! `[N, hidden]` activation so that every projection and MLP runs once per step for the whole
//! batch, while attention runs per sequence against that sequence's KV-cache slot. A sequence can
//! contribute a whole prompt (prefill) or a single token (decode) in the same call.

use candle_core::{DType, Device, Module, Tensor};

use crate::batch::{PackedStep, Plan, RowMasks};
use crate::config::HiggsConfig;
use crate::decoder_layer::{DecoderLayer, Routing, StepAttention};
use crate::error::{ForwardError, LoadError};
use crate::kv_cache::KvCache;
use crate::layers::{RmsNorm, Rope};
use crate::options::ModelOptions;
use crate::weights::{Loader, WeightFiles};

/// What one input position carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionKind {
    /// A text token, embedded with `embed_tokens`, routed through the text FFN.
    Text,
    /// An audio-in code column (`<|AUDIO|>` expansion): audio FFN, no audio head.
    AudioIn,
    /// An audio-out code column (`<|AUDIO_OUT|>` expansion or a generated frame): audio FFN.
    AudioOut,
}

impl PositionKind {
    pub fn is_audio(self) -> bool {
        !matches!(self, Self::Text)
    }
}

/// Which heads to evaluate at the last new position of a sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogitsRequest {
    pub text: bool,
    pub audio: bool,
}

impl LogitsRequest {
    pub const NONE: Self = Self {
        text: false,
        audio: false,
    };
    pub const TEXT: Self = Self {
        text: true,
        audio: false,
    };
    pub const AUDIO: Self = Self {
        text: false,
        audio: true,
    };
    pub const BOTH: Self = Self {
        text: true,
        audio: true,
    };
}

/// New positions of one sequence for one forward call.
#[derive(Debug, Clone, Default)]
pub struct SeqInput {
    /// KV-cache slot of the sequence; positions are appended after its cached ones.
    pub slot: usize,
    /// Text id per position (ignored at audio positions).
    pub ids: Vec<u32>,
    pub kinds: Vec<PositionKind>,
    /// `num_codebooks` codes per audio position, in position order, raw values (0..codebook_size+1);
    /// the per-codebook row offsets are added by the model.
    pub codes: Vec<u32>,
    pub logits: LogitsRequest,
}

impl SeqInput {
    pub fn new(slot: usize) -> Self {
        Self {
            slot,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    pub fn push_text(&mut self, id: u32) -> &mut Self {
        self.ids.push(id);
        self.kinds.push(PositionKind::Text);
        self
    }

    /// Appends one audio column (`num_codebooks` codes). `placeholder` is the text id the
    /// reference keeps at that position (`<|AUDIO|>` / `<|AUDIO_OUT|>`); it is not embedded.
    pub fn push_audio(
        &mut self,
        column: &[u32],
        kind: PositionKind,
        placeholder: u32,
    ) -> &mut Self {
        self.ids.push(placeholder);
        self.kinds.push(kind);
        self.codes.extend_from_slice(column);
        self
    }

    pub fn with_logits(mut self, l: LogitsRequest) -> Self {
        self.logits = l;
        self
    }
}

/// Result of a forward call. Logit rows follow the order of the sequences that requested them.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[n, vocab]` f32, one row per sequence with `logits.text`.
    pub text_logits: Option<Tensor>,
    /// `[n, num_codebooks, codebook_size + 2]` f32, one row per sequence with `logits.audio`.
    pub audio_logits: Option<Tensor>,
    /// With [`ForwardOptions::capture_hidden`]: `[N, hidden]` states: the merged input embeddings,
    /// the output of every decoder layer, then the final norm (all positions, packed order).
    pub hidden: Vec<Tensor>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardOptions {
    /// Keep every layer's output and the final norm of all positions (parity/debugging; slower).
    pub capture_hidden: bool,
}

/// The Higgs Audio v2 generation model (`HiggsAudioModel`).
pub struct HiggsAudioModel {
    cfg: HiggsConfig,
    embed_tokens: Tensor,
    audio_codebook_embeddings: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `None` for checkpoints saved without one (transformers' default, `use_text_head=False`).
    text_lm_head: Option<Tensor>,
    audio_lm_head: Tensor,
    rope: Rope,
    dtype: DType,
    device: Device,
    opts: ModelOptions,
}

impl HiggsAudioModel {
    /// Loads `config.json` and the safetensors weights of a model directory (either layout),
    /// with the default [`ModelOptions`].
    pub fn load(dir: &std::path::Path, dtype: DType, device: &Device) -> Result<Self, LoadError> {
        Self::load_with(dir, dtype, device, &ModelOptions::default())
    }

    /// [`Self::load`] with explicit options.
    pub fn load_with(
        dir: &std::path::Path,
        dtype: DType,
        device: &Device,
        opts: &ModelOptions,
    ) -> Result<Self, LoadError> {
        let cfg = HiggsConfig::from_file(&dir.join("config.json"))?;
        let files = WeightFiles::open(dir)?;
        Self::from_weights_with(cfg, &files, dtype, device, opts)
    }

    pub fn from_weights(
        cfg: HiggsConfig,
        w: &WeightFiles,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, LoadError> {
        Self::from_weights_with(cfg, w, dtype, device, &ModelOptions::default())
    }

    pub fn from_weights_with(
        mut cfg: HiggsConfig,
        w: &WeightFiles,
        dtype: DType,
        device: &Device,
        opts: &ModelOptions,
    ) -> Result<Self, LoadError> {
        let ld = Loader::new(w, dtype, device);
        let (h, av) = (cfg.hidden_size, cfg.audio_vocab());
        const TEXT_HEAD: &str = "audio_decoder_proj.text_lm_head.weight";
        let text_lm_head = if ld.has(TEXT_HEAD) {
            Some(ld.get(TEXT_HEAD, &[cfg.vocab_size, h])?)
        } else {
            // Said once per load: what follows changes what the engine generates.
            tracing::info!(
                "the checkpoint has no text head (text_lm_head.weight, not saved by transformers by default): \
                 generation is forced into audio and ends on the audio EOS"
            );
            None
        };
        cfg.text_head = text_lm_head.is_some();
        let layers = cfg
            .dual_ffn_layers
            .iter()
            .enumerate()
            .map(|(l, &dual)| {
                DecoderLayer::load(
                    &ld.pp(&format!("layers.{l}")),
                    &cfg,
                    dual,
                    opts.fused_swiglu,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rope = Rope::new(&cfg, device).map_err(|e| ld.err("rotary inv_freq", e))?;
        Ok(Self {
            embed_tokens: ld.get("embed_tokens.weight", &[cfg.vocab_size, h])?,
            audio_codebook_embeddings: ld.get("audio_codebook_embeddings.weight", &[av, h])?,
            norm: RmsNorm::load(&ld, "norm.weight", h, cfg.rms_norm_eps)?,
            text_lm_head,
            audio_lm_head: ld.get("audio_decoder_proj.audio_lm_head.weight", &[av, h])?,
            layers,
            rope,
            dtype,
            device: device.clone(),
            cfg,
            opts: *opts,
        })
    }

    pub fn config(&self) -> &HiggsConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn options(&self) -> &ModelOptions {
        &self.opts
    }

    /// Whether the checkpoint has a text head. Without one only audio logits exist: the engine
    /// forces every prompt into audio and ends generation on the audio EOS.
    pub fn has_text_head(&self) -> bool {
        self.text_lm_head.is_some()
    }

    /// Text head over final-norm states `[n, hidden]` -> `[n, vocab]` f32;
    /// [`ForwardError::NoTextHead`] without one.
    pub fn text_head(&self, normed: &Tensor) -> Result<Tensor, ForwardError> {
        let head = self.text_lm_head.as_ref().ok_or(ForwardError::NoTextHead)?;
        Ok(normed.matmul(&head.t()?)?.to_dtype(DType::F32)?)
    }

    /// Audio head over final-norm states `[n, hidden]` -> `[n, num_codebooks, rows]` f32.
    pub fn audio_head(&self, normed: &Tensor) -> candle_core::Result<Tensor> {
        let n = normed.dim(0)?;
        normed
            .matmul(&self.audio_lm_head.t()?)?
            .to_dtype(DType::F32)?
            .reshape((n, self.cfg.num_codebooks, self.cfg.codebook_rows()))
    }

    /// Captures the CUDA graphs of the audio decode step for batches that span `rows` slots
    /// (shortest key bucket) before any request needs them; a no-op unless the cache has decode
    /// graphs on. Nothing is written to the cache. Returns the number of graphs held.
    pub fn prepare_decode_graphs(
        &self,
        cache: &mut KvCache,
        rows: &[usize],
    ) -> Result<usize, ForwardError> {
        crate::decode_graph::prepare(self, cache, rows)
    }

    /// Allocates a KV cache matching this model (decode graphs as the options say).
    pub fn new_cache(&self, num_slots: usize, max_len: usize) -> candle_core::Result<KvCache> {
        let mut cache = KvCache::new(&self.cfg, num_slots, max_len, self.dtype, &self.device)?;
        if !self.opts.cuda_graphs {
            cache.set_decode_graphs(false);
        }
        Ok(cache)
    }

    /// One forward pass over the new positions of every sequence in `batch` (reference §3.1–3.5).
    /// Appends their K/V to the cache.
    pub fn forward(
        &self,
        batch: &[SeqInput],
        cache: &mut KvCache,
        opts: ForwardOptions,
    ) -> Result<ForwardOutput, ForwardError> {
        // Refused before anything is written to the cache, so the caller's state stays valid.
        if !self.has_text_head() && batch.iter().any(|q| q.logits.text) {
            return Err(ForwardError::NoTextHead);
        }
        let plan = Plan::new(batch, cache, &self.cfg)?;
        if !opts.capture_hidden
            && cache.graphs.enabled
            && plan.text_rows.is_empty()
            && batch
                .iter()
                .all(|q| q.len() == 1 && q.logits == LogitsRequest::AUDIO)
        {
            // The steady audio decode step: one position per sequence, so row s = sequence s.
            let step = crate::decode_graph::DecodeStep {
                slots: &plan.slots,
                pasts: &plan.seq_past,
                codes: &plan.audio_codes,
            };
            if let Some(logits) = crate::decode_graph::decode(self, &step, cache)? {
                for (s, seq) in batch.iter().enumerate() {
                    cache.commit(seq.slot, &plan.audio_flags[s..s + 1]);
                }
                return Ok(ForwardOutput {
                    text_logits: None,
                    audio_logits: Some(logits),
                    hidden: Vec::new(),
                });
            }
        }
        let dev = &self.device;
        let n = plan.kinds.len();
        let x = self.embed(&plan)?;
        let mut hidden = Vec::new();
        if opts.capture_hidden {
            hidden.push(x.clone());
        }

        let positions = Tensor::from_vec(plan.positions.clone(), n, dev)?;
        let masks = RowMasks::new(&plan, dev)?;
        let cos_sin = self.rope_tables(&positions)?;
        let step = PackedStep::new(&plan, cache, &self.cfg, &self.opts, cos_sin, dev)?;
        let routing = match plan.text_rows.is_empty() {
            true => Routing::AllAudio,
            false => Routing::Mixed(&masks),
        };
        let capture = opts.capture_hidden.then_some(&mut hidden);
        let (x, _) = self.run_layers(x, routing, &step, cache, capture)?;
        for (s, seq) in batch.iter().enumerate() {
            cache.commit(
                seq.slot,
                &plan.audio_flags[plan.seq_start[s]..plan.seq_start[s] + seq.len()],
            );
        }

        // Final norm only where a head is needed, unless every position was asked for.
        let last_rows: Vec<u32> = batch
            .iter()
            .enumerate()
            .map(|(s, q)| (plan.seq_start[s] + q.len() - 1) as u32)
            .collect();
        if opts.capture_hidden {
            hidden.push(self.norm.forward(&x)?);
        }
        let pick = |want: &dyn Fn(&LogitsRequest) -> bool| -> Vec<u32> {
            batch
                .iter()
                .zip(&last_rows)
                .filter(|(q, _)| want(&q.logits))
                .map(|(_, &r)| r)
                .collect()
        };
        let text_rows = pick(&|l| l.text);
        let audio_rows = pick(&|l| l.audio);
        let normed_rows = |rows: &[u32]| -> candle_core::Result<Tensor> {
            let idx = Tensor::from_vec(rows.to_vec(), rows.len(), dev)?;
            self.norm.forward(&x.index_select(&idx, 0)?)
        };
        let text_logits = if text_rows.is_empty() {
            None
        } else {
            Some(self.text_head(&normed_rows(&text_rows)?)?)
        };
        let audio_logits = if audio_rows.is_empty() {
            None
        } else {
            Some(self.audio_head(&normed_rows(&audio_rows)?)?)
        };
        Ok(ForwardOutput {
            text_logits,
            audio_logits,
            hidden,
        })
    }

    /// Input embeddings of the packed rows (§3.1): text rows from `embed_tokens`, audio rows from
    /// [`Self::embed_audio`]. Empty index tensors are avoided: CUDA refuses zero-byte allocations.
    fn embed(&self, plan: &Plan) -> Result<Tensor, ForwardError> {
        let dev = &self.device;
        let text_emb = if plan.text_rows.is_empty() {
            None
        } else {
            let ids = Tensor::from_vec(plan.text_ids.clone(), plan.text_ids.len(), dev)?;
            Some(self.embed_tokens.index_select(&ids, 0)?)
        };
        let audio_emb = if plan.audio_rows.is_empty() {
            None
        } else {
            let a = plan.audio_rows.len();
            let idx = Tensor::from_vec(plan.audio_codes.clone(), a * self.cfg.num_codebooks, dev)?;
            Some(self.embed_audio(&idx, a)?)
        };
        Ok(match (text_emb, audio_emb) {
            // Rows of a single kind are already in packed order.
            (Some(t), None) => t,
            (None, Some(a)) => a,
            (Some(t), Some(a)) => {
                let text_rows =
                    Tensor::from_vec(plan.text_rows.clone(), plan.text_rows.len(), dev)?;
                let audio_rows =
                    Tensor::from_vec(plan.audio_rows.clone(), plan.audio_rows.len(), dev)?;
                Tensor::zeros((plan.kinds.len(), self.cfg.hidden_size), self.dtype, dev)?
                    .index_add(&text_rows, &t, 0)?
                    .index_add(&audio_rows, &a, 0)?
            }
            (None, None) => return Err(ForwardError::Input("empty batch".into())),
        })
    }

    /// Embeddings of `rows` audio columns from their `rows * num_codebooks` embedding rows
    /// (codebook offsets added): the sum (or mean) over codebooks.
    pub(crate) fn embed_audio(&self, codes: &Tensor, rows: usize) -> candle_core::Result<Tensor> {
        let e = self
            .audio_codebook_embeddings
            .index_select(codes, 0)?
            .reshape((rows, self.cfg.num_codebooks, self.cfg.hidden_size))?;
        if self.cfg.audio_embed_avg {
            e.mean(1)
        } else {
            e.sum(1)
        }
    }

    /// RoPE cos and sin tables of per-row `positions` (u32), in the model's dtype.
    pub(crate) fn rope_tables(&self, positions: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        self.rope.cos_sin(positions, self.dtype)
    }

    pub(crate) fn final_norm(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.norm.forward(x)
    }

    /// Every decoder layer over the packed rows `x` (each layer's output pushed to `hidden`).
    /// Returns the last layer's output and, when `step` fuses add + norm, its final norm.
    pub(crate) fn run_layers(
        &self,
        mut x: Tensor,
        routing: Routing,
        step: &dyn StepAttention,
        cache: &KvCache,
        mut hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<(Tensor, Option<Tensor>), ForwardError> {
        let mut normed = None;
        for (li, layer) in self.layers.iter().enumerate() {
            let next_norm = self
                .layers
                .get(li + 1)
                .map_or(&self.norm, DecoderLayer::audio_input_norm);
            (x, normed) = layer.forward(li, &x, normed.take(), routing, step, cache, next_norm)?;
            if let Some(h) = hidden.as_deref_mut() {
                h.push(x.clone());
            }
        }
        Ok((x, normed))
    }
}
