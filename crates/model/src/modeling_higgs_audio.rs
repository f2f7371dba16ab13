//! The Higgs Audio v2 generation model, mirroring `boson_multimodal/model/higgs_audio/
//! modeling_higgs_audio.py` and `audio_head.py` (boson-ai/higgs-audio @ f04f5df), reference spec §3.
//!
//! The forward pass is *packed*: the new positions of several sequences are concatenated into one
//! `[N, hidden]` activation so that every projection and MLP runs once per step for the whole
//! batch, while attention runs per sequence against that sequence's KV-cache slot. A sequence can
//! contribute a whole prompt (prefill) or a single token (decode) in the same call.

use candle_core::{DType, Device, Module, Tensor};

use crate::config::HiggsConfig;
use crate::error::{ForwardError, LoadError};
use crate::kv_cache::KvCache;
use crate::layers::{Mlp, RmsNorm, Rope};
use crate::weights::WeightFiles;

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

struct Attention {
    /// q, k and v weights as one `[(heads + 2 kv_heads) head_dim, hidden]` matrix (one GEMM in the
    /// graphed decode step); `q`, `k`, `v` are row views of it.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    qkv: candle_nn::Linear,
    q: candle_nn::Linear,
    k: candle_nn::Linear,
    v: candle_nn::Linear,
    o: candle_nn::Linear,
}

struct DecoderLayer {
    attn: Attention,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    /// `None` for a fast-forward layer.
    audio: Option<AudioBranch>,
}

struct AudioBranch {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// The Higgs Audio v2 generation model (`HiggsAudioModel`).
pub struct HiggsAudioModel {
    cfg: HiggsConfig,
    embed_tokens: Tensor,
    audio_codebook_embeddings: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    text_lm_head: Tensor,
    audio_lm_head: Tensor,
    rope: Rope,
    dtype: DType,
    device: Device,
}

impl HiggsAudioModel {
    /// Loads `config.json` and the safetensors weights of a model directory (either layout).
    pub fn load(dir: &std::path::Path, dtype: DType, device: &Device) -> Result<Self, LoadError> {
        let cfg = HiggsConfig::from_file(&dir.join("config.json"))?;
        let files = WeightFiles::open(dir)?;
        Self::from_weights(cfg, &files, dtype, device)
    }

    pub fn from_weights(
        cfg: HiggsConfig,
        w: &WeightFiles,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, LoadError> {
        let h = cfg.hidden_size;
        let i = cfg.intermediate_size;
        let q_dim = cfg.num_attention_heads * cfg.head_dim;
        let kv = cfg.kv_dim();
        let get = |name: &str, shape: &[usize]| w.load(name, shape, dtype, device);
        let linear = |name: &str, shape: &[usize]| -> Result<candle_nn::Linear, LoadError> {
            Ok(candle_nn::Linear::new(get(name, shape)?, None))
        };
        let norm = |name: &str| -> Result<RmsNorm, LoadError> {
            Ok(RmsNorm::new(get(name, &[h])?, cfg.rms_norm_eps))
        };
        let mlp = |p: &str| -> Result<Mlp, LoadError> {
            Mlp::new(
                get(&format!("{p}.gate_proj.weight"), &[i, h])?,
                get(&format!("{p}.up_proj.weight"), &[i, h])?,
                get(&format!("{p}.down_proj.weight"), &[h, i])?,
            )
            .map_err(|e| LoadError::Tensor {
                name: format!("{p}.gate_proj.weight + up_proj.weight"),
                file: w.dir().to_path_buf(),
                source: e,
            })
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for (l, &dual) in cfg.dual_ffn_layers.iter().enumerate() {
            let p = format!("layers.{l}");
            let fuse_err = |e: candle_core::Error| LoadError::Tensor {
                name: format!("{p}.self_attn.q_proj/k_proj/v_proj.weight"),
                file: w.dir().to_path_buf(),
                source: e,
            };
            let qkv = Tensor::cat(
                &[
                    get(&format!("{p}.self_attn.q_proj.weight"), &[q_dim, h])?,
                    get(&format!("{p}.self_attn.k_proj.weight"), &[kv, h])?,
                    get(&format!("{p}.self_attn.v_proj.weight"), &[kv, h])?,
                ],
                0,
            )
            .map_err(fuse_err)?;
            let rows = |start: usize, len: usize| -> Result<candle_nn::Linear, LoadError> {
                Ok(candle_nn::Linear::new(
                    qkv.narrow(0, start, len).map_err(fuse_err)?,
                    None,
                ))
            };
            let attn = Attention {
                q: rows(0, q_dim)?,
                k: rows(q_dim, kv)?,
                v: rows(q_dim + kv, kv)?,
                qkv: candle_nn::Linear::new(qkv.clone(), None),
                o: linear(&format!("{p}.self_attn.o_proj.weight"), &[h, q_dim])?,
            };
            let audio = if dual {
                Some(AudioBranch {
                    input_layernorm: norm(&format!("{p}.audio_input_layernorm.weight"))?,
                    post_attention_layernorm: norm(&format!(
                        "{p}.audio_post_attention_layernorm.weight"
                    ))?,
                    mlp: mlp(&format!("{p}.audio_mlp"))?,
                })
            } else {
                None
            };
            layers.push(DecoderLayer {
                attn,
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                mlp: mlp(&format!("{p}.mlp"))?,
                audio,
            });
        }
        let av = cfg.audio_vocab();
        let rope = Rope::new(&cfg, device).map_err(|e| LoadError::Tensor {
            name: "rotary inv_freq".into(),
            file: w.dir().to_path_buf(),
            source: e,
        })?;
        Ok(Self {
            embed_tokens: get("embed_tokens.weight", &[cfg.vocab_size, h])?,
            audio_codebook_embeddings: get("audio_codebook_embeddings.weight", &[av, h])?,
            norm: norm("norm.weight")?,
            text_lm_head: get(
                "audio_decoder_proj.text_lm_head.weight",
                &[cfg.vocab_size, h],
            )?,
            audio_lm_head: get("audio_decoder_proj.audio_lm_head.weight", &[av, h])?,
            layers,
            rope,
            dtype,
            device: device.clone(),
            cfg,
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

    /// Text head over final-norm states `[n, hidden]` -> `[n, vocab]` f32.
    pub fn text_head(&self, normed: &Tensor) -> candle_core::Result<Tensor> {
        normed.matmul(&self.text_lm_head.t()?)?.to_dtype(DType::F32)
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

    /// Allocates a KV cache matching this model.
    pub fn new_cache(&self, num_slots: usize, max_len: usize) -> candle_core::Result<KvCache> {
        KvCache::new(&self.cfg, num_slots, max_len, self.dtype, &self.device)
    }

    /// One forward pass over the new positions of every sequence in `batch` (reference §3.1–3.5).
    /// Appends their K/V to the cache.
    pub fn forward(
        &self,
        batch: &[SeqInput],
        cache: &mut KvCache,
        opts: ForwardOptions,
    ) -> Result<ForwardOutput, ForwardError> {
        let plan = self.plan(batch, cache)?;
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

        // Embeddings (§3.1): text rows from embed_tokens, audio rows = sum over codebooks. Empty
        // index tensors are avoided: CUDA refuses zero-byte allocations.
        let text_emb = if plan.text_rows.is_empty() {
            None
        } else {
            let ids = Tensor::from_vec(plan.text_ids.clone(), plan.text_ids.len(), dev)?;
            Some(self.embed_tokens.embedding_rows(&ids)?)
        };
        let audio_emb = if plan.audio_rows.is_empty() {
            None
        } else {
            let a = plan.audio_rows.len();
            let nc = self.cfg.num_codebooks;
            let idx = Tensor::from_vec(plan.audio_codes.clone(), a * nc, dev)?;
            let e = self
                .audio_codebook_embeddings
                .embedding_rows(&idx)?
                .reshape((a, nc, self.cfg.hidden_size))?;
            Some(if self.cfg.audio_embed_avg {
                e.mean(1)?
            } else {
                e.sum(1)?
            })
        };
        let mut x = match (text_emb, audio_emb) {
            // Rows of a single kind are already in packed order.
            (Some(t), None) => t,
            (None, Some(a)) => a,
            (Some(t), Some(a)) => {
                let text_rows =
                    Tensor::from_vec(plan.text_rows.clone(), plan.text_rows.len(), dev)?;
                let audio_rows =
                    Tensor::from_vec(plan.audio_rows.clone(), plan.audio_rows.len(), dev)?;
                Tensor::zeros((n, self.cfg.hidden_size), self.dtype, dev)?
                    .index_add(&text_rows, &t, 0)?
                    .index_add(&audio_rows, &a, 0)?
            }
            (None, None) => return Err(ForwardError::Input("empty batch".into())),
        };
        let mut hidden = Vec::new();
        if opts.capture_hidden {
            hidden.push(x.clone());
        }

        let positions = Tensor::from_vec(plan.positions.clone(), n, dev)?;
        let (cos, sin) = self.rope.cos_sin(&positions, self.dtype)?;
        let masks = RowMasks::new(&plan, dev)?;
        let group = DecodeGroup::new(&plan, cache, &self.cfg, dev)?;
        let prefill = PrefillGroup::new(&plan, cache, &self.cfg, dev)?;
        let write = PieceWrites::new(&plan, group.is_some(), cache, &self.cfg, dev)?;
        let groups = Groups {
            decode: group,
            prefill,
            write,
        };

        for (li, layer) in self.layers.iter().enumerate() {
            x = self.layer_forward(li, layer, &x, &plan, &masks, &groups, &cos, &sin, cache)?;
            if opts.capture_hidden {
                hidden.push(x.clone());
            }
        }
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

    /// Validates the batch and flattens it into row-level arrays.
    fn plan(&self, batch: &[SeqInput], cache: &KvCache) -> Result<Plan, ForwardError> {
        if batch.is_empty() {
            return Err(ForwardError::Input("empty batch".into()));
        }
        let nc = self.cfg.num_codebooks;
        let rows_per_cb = self.cfg.codebook_rows() as u32;
        let mut p = Plan::default();
        for (s, seq) in batch.iter().enumerate() {
            let n = seq.len();
            if n == 0 {
                return Err(ForwardError::Input(format!(
                    "sequence {s} has no new positions"
                )));
            }
            if seq.ids.len() != n {
                return Err(ForwardError::Input(format!(
                    "sequence {s}: {} ids for {n} positions",
                    seq.ids.len()
                )));
            }
            if batch[..s].iter().any(|o| o.slot == seq.slot) {
                return Err(ForwardError::Input(format!(
                    "slot {} appears twice in the batch",
                    seq.slot
                )));
            }
            let n_audio = seq.kinds.iter().filter(|k| k.is_audio()).count();
            if seq.codes.len() != n_audio * nc {
                return Err(ForwardError::Input(format!(
                    "sequence {s}: {} codes for {n_audio} audio positions of {nc} codebooks",
                    seq.codes.len()
                )));
            }
            let past = cache.check_room(seq.slot, n)?;
            p.seq_start.push(p.kinds.len());
            p.seq_past.push(past);
            let mut codes = seq.codes.chunks(nc);
            for (j, (&kind, &id)) in seq.kinds.iter().zip(&seq.ids).enumerate() {
                let row = p.kinds.len() as u32;
                p.positions.push((past + j) as u32);
                p.kinds.push(kind);
                p.audio_flags.push(kind.is_audio());
                if kind.is_audio() {
                    let col = codes.next().unwrap_or(&[]);
                    for (k, &c) in col.iter().enumerate() {
                        if c >= rows_per_cb {
                            return Err(ForwardError::Input(format!(
                                "sequence {s}: audio code {c} of codebook {k} is out of range (< {rows_per_cb})"
                            )));
                        }
                        p.audio_codes.push(c + k as u32 * rows_per_cb);
                    }
                    p.audio_rows.push(row);
                } else {
                    if id as usize >= self.cfg.vocab_size {
                        return Err(ForwardError::Input(format!(
                            "sequence {s}: token id {id} is outside the vocabulary ({})",
                            self.cfg.vocab_size
                        )));
                    }
                    p.text_rows.push(row);
                    p.text_ids.push(id);
                }
            }
            p.slots.push(seq.slot);
            p.lens.push(n);
        }
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        li: usize,
        layer: &DecoderLayer,
        x: &Tensor,
        plan: &Plan,
        masks: &RowMasks,
        groups: &Groups,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor, ForwardError> {
        let has_audio = !plan.audio_rows.is_empty();
        let all_audio = plan.text_rows.is_empty();
        if let (Some(a), true) = (&layer.audio, all_audio) {
            // Every position is audio (the decode hot path): the audio norms and FFN only, no
            // routing, no text weights touched.
            let h_norm = a.input_layernorm.forward(x)?;
            let attn = self.attention(
                li,
                &layer.attn,
                &h_norm,
                plan,
                groups,
                cos,
                sin,
                cache,
                false,
            )?;
            let r = (x + attn)?;
            let d = a.mlp.forward(&a.post_attention_layernorm.forward(&r)?)?;
            return Ok((r + d)?);
        }
        let h_norm = match (&layer.audio, &masks.audio) {
            (Some(a), Some(m)) => select_rows(
                m,
                &a.input_layernorm.forward(x)?,
                &layer.input_layernorm.forward(x)?,
            )?,
            _ => layer.input_layernorm.forward(x)?,
        };
        let fast_forward = layer.audio.is_none();
        let attn = self.attention(
            li,
            &layer.attn,
            &h_norm,
            plan,
            groups,
            cos,
            sin,
            cache,
            fast_forward,
        )?;
        let r = (x + attn)?;
        let out = match &layer.audio {
            Some(a) if has_audio => {
                let mut out = r.clone();
                if !plan.text_rows.is_empty() {
                    let t = masks.text_idx()?;
                    let tr = r.index_select(t, 0)?;
                    let d = layer
                        .mlp
                        .forward(&layer.post_attention_layernorm.forward(&tr)?)?;
                    out = out.index_add(t, &d, 0)?;
                }
                let ai = masks.audio_idx()?;
                let ar = r.index_select(ai, 0)?;
                let d = a.mlp.forward(&a.post_attention_layernorm.forward(&ar)?)?;
                out.index_add(ai, &d, 0)?
            }
            _ => {
                let full = (&r
                    + layer
                        .mlp
                        .forward(&layer.post_attention_layernorm.forward(&r)?)?)?;
                match (&masks.audio, fast_forward) {
                    // Fast-forward layer: audio positions leave with their input unchanged.
                    (Some(m), true) => select_rows(m, x, &full)?,
                    _ => full,
                }
            }
        };
        Ok(out)
    }

    /// Shared self-attention over the packed rows (reference §3.3), GQA.
    ///
    /// K/V of the new positions are written into the slot cache first: the one-position
    /// sequences of the step with one scatter per tensor over their slot range, longer pieces
    /// (prefills) with one copy per sequence. Reads: every one-position sequence that needs no
    /// special mask attends in ONE batched matmul over the slot range of the cache (each KV block
    /// read once for its `n_rep` query heads, keys past a slot's length masked); the others
    /// (prefill pieces, fast-forward text queries) attend per sequence.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        li: usize,
        a: &Attention,
        h: &Tensor,
        plan: &Plan,
        groups: &Groups,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
        fast_forward: bool,
    ) -> Result<Tensor, ForwardError> {
        let group = groups.decode.as_ref();
        let cfg = &self.cfg;
        let (n, _) = h.dims2()?;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let n_rep = nh / nkv;
        // Row layout [1, N, heads, hd] (rope_thd): no transposes on the projections.
        let q = a.q.forward(h)?.reshape((1, n, nh, hd))?;
        let q = candle_nn::rotary_emb::rope_thd(&q, cos, sin)?.reshape((n, nh * hd))?;
        let k = a.k.forward(h)?.reshape((1, n, nkv, hd))?;
        let k = candle_nn::rotary_emb::rope_thd(&k, cos, sin)?.reshape((n, nkv * hd))?;
        let v = a.v.forward(h)?;

        // Writes.
        if let Some(g) = group {
            let (k, v) = match &g.src_map {
                Some(m) => (k.index_select(m, 0)?, v.index_select(m, 0)?),
                None => (k.clone(), v.clone()),
            };
            self.write_slot_range(li, &k, &v, g.lo, g.r, &g.write_idx, cache)?;
        }
        if let Some(w) = &groups.write {
            w.write(li, &k, &v, cache)?;
        }
        // Per-piece writes: only when the batched write is off (or its indices would overflow).
        let per_piece = if groups.write.is_some() {
            0
        } else {
            plan.slots.len()
        };
        for s in 0..per_piece {
            let (start, len, past, slot) = plan.piece(s);
            if len == 1 && group.is_some() {
                continue;
            }
            for (src, dst) in [(&k, &cache.k[li]), (&v, &cache.v[li])] {
                let rows = src
                    .narrow(0, start, len)?
                    .reshape((len, nkv, hd))?
                    .transpose(0, 1)?
                    .unsqueeze(0)?
                    .contiguous()?;
                dst.narrow(0, slot, 1)?.slice_set(&rows, 2, past)?;
            }
        }

        // Reads.
        let scale = 1.0 / (hd as f64).sqrt();
        let mut pieces: Vec<(Vec<u32>, Tensor)> = Vec::new();
        let mut batched = vec![false; plan.slots.len()];
        if let Some(g) = group {
            let members: Vec<usize> = g
                .seqs
                .iter()
                .enumerate()
                .filter(|(_, &s)| !(fast_forward && self.needs_audio_mask(plan, s, cache)))
                .map(|(m, _)| m)
                .collect();
            if !members.is_empty() {
                let qr = match &g.q_map {
                    Some(m) => q.index_select(m, 0)?,
                    None => q.clone(),
                };
                let o = self.attend_slot_range(li, &qr, g.lo, g.r, g.tmax, &g.mask, cache)?;
                if members.len() == g.seqs.len() && g.identity {
                    pieces.push((Vec::new(), o));
                } else {
                    let offs: Vec<u32> = members.iter().map(|&m| g.offs[m]).collect();
                    let idx = Tensor::from_vec(offs, members.len(), &self.device)?;
                    let rows = members
                        .iter()
                        .map(|&m| plan.seq_start[g.seqs[m]] as u32)
                        .collect();
                    pieces.push((rows, o.index_select(&idx, 0)?));
                }
                for &m in &members {
                    batched[g.seqs[m]] = true;
                }
            }
        }
        if let Some(pg) = &groups.prefill {
            // In a fast-forward layer text queries must not see audio keys: those pieces (and
            // then the whole group, whose mask does not know it) attend per sequence.
            let usable = !fast_forward
                || pg
                    .seqs
                    .iter()
                    .all(|&s| !self.needs_audio_mask(plan, s, cache));
            if usable {
                let o = self.attend_prefill_group(li, &q, pg, cache)?;
                let rows = pg
                    .seqs
                    .iter()
                    .flat_map(|&s| {
                        let start = plan.seq_start[s] as u32;
                        start..start + plan.lens[s] as u32
                    })
                    .collect();
                pieces.push((rows, o));
                for &s in &pg.seqs {
                    batched[s] = true;
                }
            }
        }
        for (s, &done) in batched.iter().enumerate() {
            if done {
                continue;
            }
            let (start, len, past, slot) = plan.piece(s);
            let total = past + len;
            let ks = cache.k[li]
                .narrow(0, slot, 1)?
                .narrow(2, 0, total)?
                .squeeze(0)?; // [nkv, T, hd]
            let vs = cache.v[li]
                .narrow(0, slot, 1)?
                .narrow(2, 0, total)?
                .squeeze(0)?;
            // GQA without copying K/V: query head g*n_rep + r uses KV head g.
            let qs = q
                .narrow(0, start, len)?
                .reshape((len, nh, hd))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((nkv, n_rep * len, hd))?;
            let scores = (qs.matmul(&ks.t()?)? * scale)?
                .to_dtype(DType::F32)?
                .reshape((nkv, n_rep, len, total))?;
            let scores = match self.attention_mask(plan, s, cache, fast_forward)? {
                Some(m) => scores.broadcast_add(&m)?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?
                .to_dtype(self.dtype)?
                .reshape((nkv, n_rep * len, total))?;
            let o = probs
                .matmul(&vs)? // [nkv, n_rep*len, hd]
                .reshape((nh, len, hd))?
                .transpose(0, 1)?
                .reshape((len, nh * hd))?;
            pieces.push(((start as u32..(start + len) as u32).collect(), o));
        }
        let o = assemble_rows(pieces, n, &self.device)?;
        Ok(a.o.forward(&o)?)
    }

    /// Prefill pieces of several sequences in ONE padded attention: queries `[S, kv_heads, n_rep ·
    /// Lmax, hd]` against each piece's slot keys `0..Tmax` (gathered once per layer), causal mask
    /// per piece (padding queries see key 0 only and are dropped). Returns the rows of the pieces
    /// in group order, `[sum len, heads · hd]`.
    fn attend_prefill_group(
        &self,
        li: usize,
        q: &Tensor,
        g: &PrefillGroup,
        cache: &KvCache,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let n_rep = nh / nkv;
        let (s, l, t) = (g.seqs.len(), g.lmax, g.tmax);
        // index_select needs a contiguous source: copy the slot range's first T keys, then pick.
        let gather = |c: &Tensor| -> candle_core::Result<Tensor> {
            c.narrow(0, g.lo, g.r)?
                .narrow(2, 0, t)?
                .contiguous()?
                .index_select(&g.offs, 0) // [S, nkv, T, hd]
        };
        let (kc, vc) = (gather(&cache.k[li])?, gather(&cache.v[li])?);
        let qg = q
            .index_select(&g.q_rows, 0)? // [S*L, nh*hd]
            .reshape((s, l, nkv, n_rep, hd))?
            .permute((0, 2, 3, 1, 4))?
            .contiguous()?
            .reshape((s, nkv, n_rep * l, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (qg.matmul(&kc.t()?)? * scale)?
            .to_dtype(DType::F32)?
            .reshape((s, nkv, n_rep, l, t))?
            .broadcast_add(&g.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(self.dtype)?
            .reshape((s, nkv, n_rep * l, t))?;
        probs
            .matmul(&vc)? // [S, nkv, n_rep*L, hd]
            .reshape((s, nkv, n_rep, l, hd))?
            .permute((0, 3, 1, 2, 4))?
            .contiguous()?
            .reshape((s * l, nh * hd))?
            .index_select(&g.valid, 0)
    }

    /// Writes K/V `[R, kv_dim]` of one new position per slot of `lo..lo + r` into the cache at
    /// `write_idx` (`[R * kv_heads, 1, head_dim]` u32 positions; `u32::MAX` skips the slot).
    #[allow(clippy::too_many_arguments)]
    fn write_slot_range(
        &self,
        li: usize,
        k: &Tensor,
        v: &Tensor,
        lo: usize,
        r: usize,
        write_idx: &Tensor,
        cache: &KvCache,
    ) -> candle_core::Result<()> {
        let (nkv, hd) = (self.cfg.num_key_value_heads, self.cfg.head_dim);
        let max_len = cache.max_len();
        for (src, dst) in [(k, &cache.k[li]), (v, &cache.v[li])] {
            let dst = dst.narrow(0, lo, r)?.reshape((r * nkv, max_len, hd))?;
            dst.scatter_set(write_idx, &src.reshape((r * nkv, 1, hd))?, 1)?;
        }
        Ok(())
    }

    /// One query position per slot of `lo..lo + r` (`q`: `[R, heads * head_dim]`, rope applied)
    /// attending over keys `0..tmax` of its slot in ONE batched matmul: each KV block is read once
    /// for its `n_rep` query heads; `mask` (`[R, 1, 1, tmax]` f32, additive) hides keys past each
    /// slot's length. Returns `[R, heads * head_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attend_slot_range(
        &self,
        li: usize,
        q: &Tensor,
        lo: usize,
        r: usize,
        tmax: usize,
        mask: &Tensor,
        cache: &KvCache,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let qr = q.reshape((r, nkv, nh / nkv, hd))?;
        let kc = cache.k[li].narrow(0, lo, r)?.narrow(2, 0, tmax)?;
        let vc = cache.v[li].narrow(0, lo, r)?.narrow(2, 0, tmax)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (qr.matmul(&kc.t()?)? * scale)?
            .to_dtype(DType::F32)?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
        probs.matmul(&vc)?.reshape((r, nh * hd)) // [R, nkv*n_rep*hd]
    }

    /// The whole audio decode step for slots `0..rows`, from ONE packed u32 device buffer and
    /// with fixed shapes, so that it can be captured as a CUDA graph and replayed (see
    /// `decode_graph`). `input` = `[codes (rows * codebooks, codebook offsets added) | positions
    /// (rows) | write positions (rows, u32::MAX = no write) | attended lengths (rows)]`; keys
    /// `0..keys` are read (`keys` >= every length, the rest masked). Every slot's one position is
    /// an audio position; returns the audio logits of all `rows` slots. It must stay free of
    /// host uploads and syncs (graph capture forbids them): host data comes only through
    /// `input`, and `key_pos` (`[>= keys]` f32 0, 1, 2, ..) is a persistent tensor.
    pub(crate) fn decode_step_body(
        &self,
        input: &Tensor,
        rows: usize,
        keys: usize,
        key_pos: &Tensor,
        cache: &KvCache,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (nh, nkv, hd, nc) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.num_codebooks,
        );
        let codes = input.narrow(0, 0, rows * nc)?;
        let positions = input.narrow(0, rows * nc, rows)?;
        let write_pos = input.narrow(0, rows * nc + rows, rows)?;
        let lens_u32 = input.narrow(0, rows * nc + 2 * rows, rows)?;
        let lens = lens_u32.to_dtype(DType::F32)?.reshape((rows, 1, 1, 1))?;
        let e = self
            .audio_codebook_embeddings
            .embedding_rows(&codes)?
            .reshape((rows, nc, cfg.hidden_size))?;
        let mut x = if cfg.audio_embed_avg {
            e.mean(1)?
        } else {
            e.sum(1)?
        };
        let (cos, sin) = self.rope.cos_sin(&positions, self.dtype)?;
        let write_idx = write_pos
            .reshape((rows, 1, 1))?
            .broadcast_as((rows, nkv, hd))?
            .contiguous()?
            .reshape((rows * nkv, 1, hd))?;
        let mask = key_pos
            .narrow(0, 0, keys)?
            .reshape((1, 1, 1, keys))?
            .broadcast_ge(&lens)?
            .to_dtype(DType::F32)?
            .affine(f32::MIN as f64, 0.0)?;
        #[cfg(feature = "cuda")]
        let fused = self.device.is_cuda() && crate::decode_kernels::enabled();
        #[cfg(feature = "cuda")]
        let add_norm = crate::decode_kernels::add_norm_enabled();
        #[cfg(feature = "cuda")]
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        // The input norm of the next layer (or the final norm), when a fused kernel produced it
        // together with the residual add.
        let mut next_h: Option<Tensor> = None;
        fn input_norm(l: &DecoderLayer) -> &RmsNorm {
            match &l.audio {
                Some(b) => &b.input_layernorm,
                None => &l.input_layernorm,
            }
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let a = &layer.attn;
            // Fast-forward layers only store K/V for audio positions; their output is the input.
            let h = match next_h.take() {
                Some(h) => h,
                None => input_norm(layer).forward(&x)?,
            };
            #[cfg(feature = "cuda")]
            if fused {
                // One GEMM for q|k|v, one kernel for RoPE + the K/V cache write, one for the
                // masked softmax, two for residual add + RMSNorm (same maths as below, f32 inside
                // the kernels).
                let q = crate::decode_kernels::decode_qkv(
                    &a.qkv.forward(&h)?,
                    &cos,
                    &sin,
                    &write_pos,
                    &cache.k[li],
                    &cache.v[li],
                    nh,
                    nkv,
                    hd,
                )?;
                let Some(b) = &layer.audio else {
                    continue;
                };
                let qr = q.reshape((rows, nkv, nh / nkv, hd))?;
                let kc = cache.k[li].narrow(0, 0, rows)?.narrow(2, 0, keys)?;
                let vc = cache.v[li].narrow(0, 0, rows)?.narrow(2, 0, keys)?;
                let probs =
                    crate::decode_kernels::decode_softmax(&qr.matmul(&kc.t()?)?, &lens_u32, scale)?;
                let o = probs.matmul(&vc)?.reshape((rows, nh * hd))?;
                let post = &b.post_attention_layernorm;
                if !add_norm {
                    let r = (&x + a.o.forward(&o)?)?;
                    let d = b.mlp.forward(&post.forward(&r)?)?;
                    x = (r + d)?;
                    continue;
                }
                // Residual adds fused with the norm that follows each of them.
                let (r, h2) = crate::decode_kernels::add_rmsnorm(
                    &x,
                    &a.o.forward(&o)?,
                    post.weight(),
                    post.eps(),
                )?;
                let d = b.mlp.forward(&h2)?;
                let next = self.layers.get(li + 1).map_or(&self.norm, input_norm);
                let (xn, hn) =
                    crate::decode_kernels::add_rmsnorm(&r, &d, next.weight(), next.eps())?;
                x = xn;
                next_h = Some(hn);
                continue;
            }
            let q = a.q.forward(&h)?.reshape((1, rows, nh, hd))?;
            let k = a.k.forward(&h)?.reshape((1, rows, nkv, hd))?;
            let k = candle_nn::rotary_emb::rope_thd(&k, &cos, &sin)?.reshape((rows, nkv * hd))?;
            let v = a.v.forward(&h)?;
            self.write_slot_range(li, &k, &v, 0, rows, &write_idx, cache)?;
            let Some(b) = &layer.audio else {
                continue;
            };
            let q = candle_nn::rotary_emb::rope_thd(&q, &cos, &sin)?.reshape((rows, nh * hd))?;
            let o = self.attend_slot_range(li, &q, 0, rows, keys, &mask, cache)?;
            let r = (&x + a.o.forward(&o)?)?;
            let d = b.mlp.forward(&b.post_attention_layernorm.forward(&r)?)?;
            x = (r + d)?;
        }
        let normed = match next_h {
            Some(h) => h,
            None => self.norm.forward(&x)?,
        };
        self.audio_head(&normed)
    }

    /// Whether a fast-forward layer must hide audio keys from sequence `s`'s text queries.
    fn needs_audio_mask(&self, plan: &Plan, s: usize, cache: &KvCache) -> bool {
        let (start, len, slot) = (plan.seq_start[s], plan.lens[s], plan.slots[s]);
        let new_flags = &plan.audio_flags[start..start + len];
        (new_flags.iter().any(|&f| f) || cache.audio_flags(slot).iter().any(|&f| f))
            && new_flags.iter().any(|&f| !f)
    }

    /// Additive mask `[len, total]` for sequence `s`: causal, and in fast-forward layers text
    /// queries do not see audio keys. `None` when nothing is masked (single decode position).
    fn attention_mask(
        &self,
        plan: &Plan,
        s: usize,
        cache: &KvCache,
        fast_forward: bool,
    ) -> Result<Option<Tensor>, ForwardError> {
        let (start, len, past, slot) = (
            plan.seq_start[s],
            plan.lens[s],
            plan.seq_past[s],
            plan.slots[s],
        );
        let total = past + len;
        let new_flags = &plan.audio_flags[start..start + len];
        let past_flags = cache.audio_flags(slot);
        let mask_audio = fast_forward
            && (new_flags.iter().any(|&f| f) || past_flags.iter().any(|&f| f))
            && new_flags.iter().any(|&f| !f);
        if len == 1 && !mask_audio {
            return Ok(None);
        }
        let is_audio_key = |j: usize| {
            if j < past {
                past_flags[j]
            } else {
                new_flags[j - past]
            }
        };
        let mut m = vec![0f32; len * total];
        for i in 0..len {
            let qpos = past + i;
            let text_query = !new_flags[i];
            for j in 0..total {
                if j > qpos || (mask_audio && text_query && is_audio_key(j)) {
                    m[i * total + j] = f32::NEG_INFINITY;
                }
            }
        }
        Ok(Some(Tensor::from_vec(m, (len, total), &self.device)?))
    }
}

impl Plan {
    /// `(first packed row, new positions, cached positions, slot)` of sequence `s`.
    fn piece(&self, s: usize) -> (usize, usize, usize, usize) {
        (
            self.seq_start[s],
            self.lens[s],
            self.seq_past[s],
            self.slots[s],
        )
    }
}

/// Row-level view of a packed batch.
#[derive(Default)]
struct Plan {
    slots: Vec<usize>,
    lens: Vec<usize>,
    seq_start: Vec<usize>,
    seq_past: Vec<usize>,
    kinds: Vec<PositionKind>,
    audio_flags: Vec<bool>,
    positions: Vec<u32>,
    text_rows: Vec<u32>,
    text_ids: Vec<u32>,
    audio_rows: Vec<u32>,
    audio_codes: Vec<u32>,
}

/// The one-position sequences of a forward, attended in one batched matmul over the slot range
/// `lo..lo + r` of the cache. Slots of the range that are not in the group are computed too (their
/// rows are never used) and never written.
struct DecodeGroup {
    lo: usize,
    r: usize,
    /// Longest attended length in the group (keys read per slot).
    tmax: usize,
    /// Sequence indices (batch order) and their slot offsets `slot - lo`.
    seqs: Vec<usize>,
    offs: Vec<u32>,
    /// `[R]` packed row feeding each slot of the range (None: the rows are the range, in order).
    src_map: Option<Tensor>,
    q_map: Option<Tensor>,
    /// Rows of the group are exactly the packed rows `0..N` in slot order.
    identity: bool,
    /// `[R * kv_heads, 1, head_dim]` u32: write position per slot and KV head (u32::MAX = skip).
    write_idx: Tensor,
    /// `[R, 1, 1, tmax]` f32 additive mask: keys at or past a slot's length get f32::MIN.
    mask: Tensor,
}

impl DecodeGroup {
    fn new(
        plan: &Plan,
        cache: &KvCache,
        cfg: &HiggsConfig,
        dev: &Device,
    ) -> candle_core::Result<Option<Self>> {
        let seqs: Vec<usize> = (0..plan.slots.len())
            .filter(|&s| plan.lens[s] == 1)
            .collect();
        if seqs.is_empty() {
            return Ok(None);
        }
        let lo = seqs.iter().map(|&s| plan.slots[s]).min().unwrap_or(0);
        let hi = seqs.iter().map(|&s| plan.slots[s]).max().unwrap_or(0);
        let r = hi - lo + 1;
        let tmax = seqs
            .iter()
            .map(|&s| plan.seq_past[s] + 1)
            .max()
            .unwrap_or(1)
            .min(cache.max_len());
        let first_row = plan.seq_start[seqs[0]] as u32;
        let mut map = vec![first_row; r];
        let mut pos = vec![u32::MAX; r];
        let mut lens = vec![tmax as f32; r];
        let mut offs = Vec::with_capacity(seqs.len());
        for &s in &seqs {
            let off = plan.slots[s] - lo;
            map[off] = plan.seq_start[s] as u32;
            pos[off] = plan.seq_past[s] as u32;
            lens[off] = (plan.seq_past[s] + 1) as f32;
            offs.push(off as u32);
        }
        let identity = seqs.len() == plan.slots.len()
            && r == seqs.len()
            && map.iter().enumerate().all(|(i, &m)| m == i as u32);
        let src_map = if identity {
            None
        } else {
            Some(Tensor::from_vec(map, r, dev)?)
        };
        let (nkv, hd) = (cfg.num_key_value_heads, cfg.head_dim);
        let write_idx = Tensor::from_vec(pos, (r, 1, 1), dev)?
            .broadcast_as((r, nkv, hd))?
            .contiguous()?
            .reshape((r * nkv, 1, hd))?;
        let keys = Tensor::arange(0u32, tmax as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((1, 1, 1, tmax))?;
        let lens = Tensor::from_vec(lens, (r, 1, 1, 1), dev)?;
        let mask = keys
            .broadcast_ge(&lens)?
            .to_dtype(DType::F32)?
            .affine(f32::MIN as f64, 0.0)?;
        Ok(Some(Self {
            lo,
            r,
            tmax,
            seqs,
            offs,
            q_map: src_map.clone(),
            src_map,
            identity,
            write_idx,
            mask,
        }))
    }
}

/// The attention groups of one forward (built once, used by every layer).
struct Groups {
    decode: Option<DecodeGroup>,
    prefill: Option<PrefillGroup>,
    write: Option<PieceWrites>,
}

/// The K/V cache writes of every piece not written by the decode group (prefill pieces, and all
/// pieces when there is no group) as ONE launch per layer and K/V, instead of ~3 launches per
/// piece (narrow/transpose copy, slice_set): 50 prompts in a prefill step were ~8 000 launches.
/// On CUDA the write is our `kv_write_rows` kernel: candle's scatter, used for it first, runs
/// one thread per head-dim element and walks the M·kv_heads destination rows serially, which
/// halved the engine's throughput under load. The CPU uses candle's scatter (same result).
struct PieceWrites {
    /// `[M]` u32: the packed rows written, in order.
    rows: Tensor,
    /// Whether `rows` is `0..N` (every packed row, in order).
    all: bool,
    /// `[M * kv_heads]` u32: destination row of each (row, KV head) in the layer's cache viewed
    /// as `[slots * kv_heads * max_len, head_dim]`; on the CPU broadcast to `[M * kv_heads,
    /// head_dim]` for candle's scatter.
    ids: Tensor,
}

impl PieceWrites {
    fn new(
        plan: &Plan,
        has_decode_group: bool,
        cache: &KvCache,
        cfg: &HiggsConfig,
        dev: &Device,
    ) -> candle_core::Result<Option<Self>> {
        let (nkv, hd, max_len) = (cfg.num_key_value_heads, cfg.head_dim, cache.max_len());
        // Destination rows must fit u32 indices. `HIGGS_BATCHED_KV_WRITE=0` keeps the per-piece
        // writes (for A/B runs).
        if cache.num_slots() * nkv * max_len > u32::MAX as usize
            || std::env::var("HIGGS_BATCHED_KV_WRITE").is_ok_and(|v| v == "0")
        {
            return Ok(None);
        }
        let mut rows: Vec<u32> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        for s in 0..plan.slots.len() {
            let (start, len, past, slot) = plan.piece(s);
            if len == 1 && has_decode_group {
                continue;
            }
            for j in 0..len {
                rows.push((start + j) as u32);
                for g in 0..nkv {
                    ids.push(((slot * nkv + g) * max_len + past + j) as u32);
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let m = rows.len();
        let all = m == plan.kinds.len() && rows.iter().enumerate().all(|(i, &r)| r == i as u32);
        let ids = Tensor::from_vec(ids, m * nkv, dev)?;
        let ids = if dev.is_cuda() {
            ids
        } else {
            ids.reshape((m * nkv, 1))?
                .broadcast_as((m * nkv, hd))?
                .contiguous()?
        };
        let rows = Tensor::from_vec(rows, m, dev)?;
        Ok(Some(Self { rows, all, ids }))
    }

    /// Writes the pieces' rows of `k`, `v` (`[N, kv_heads * head_dim]`) into layer `li`'s cache.
    fn write(&self, li: usize, k: &Tensor, v: &Tensor, cache: &KvCache) -> candle_core::Result<()> {
        for (src, dst) in [(k, &cache.k[li]), (v, &cache.v[li])] {
            #[cfg(feature = "cuda")]
            if src.device().is_cuda() {
                crate::decode_kernels::kv_write_rows(
                    dst,
                    &src.contiguous()?,
                    &self.rows,
                    &self.ids,
                )?;
                continue;
            }
            let src = if self.all {
                src.contiguous()?
            } else {
                src.index_select(&self.rows, 0)?
            };
            let (m, kv_dim) = src.dims2()?;
            let hd = self.ids.dim(1)?;
            let src = src.reshape((m * kv_dim / hd, hd))?;
            let rows = dst.elem_count() / hd;
            // A contiguous reshape shares the cache's storage: the scatter writes in place.
            dst.reshape((rows, hd))?.scatter_set(&self.ids, &src, 0)?;
        }
        Ok(())
    }
}

/// Prefill pieces (more than one new position) attended together, padded to the longest piece.
/// Without it each piece costs ~12 kernel launches per layer: 32 prompts admitted in one step
/// meant ~10 000 launches, which dominated the time to first audio under load.
struct PrefillGroup {
    /// Sequence indices (batch order).
    seqs: Vec<usize>,
    /// Slot range `lo..lo + r` holding the pieces, and `[S]` u32 slot offsets in it.
    lo: usize,
    r: usize,
    offs: Tensor,
    lmax: usize,
    tmax: usize,
    /// `[S * Lmax]` packed row of each padded query (padding: the piece's first row).
    q_rows: Tensor,
    /// `[sum len]` indices of the real queries in the padded `[S * Lmax]` output.
    valid: Tensor,
    /// `[S, 1, 1, Lmax, Tmax]` f32 additive causal mask (`f32::MIN` where hidden).
    mask: Tensor,
}

/// Score elements (f32) one prefill group may need; longer pieces attend alone.
const PREFILL_GROUP_SCORES: usize = 1 << 26;

impl PrefillGroup {
    fn new(
        plan: &Plan,
        cache: &KvCache,
        cfg: &HiggsConfig,
        dev: &Device,
    ) -> candle_core::Result<Option<Self>> {
        let heads = cfg.num_attention_heads;
        // K (or V) elements of one slot and position.
        let kv_rows_per_slot = cfg.num_key_value_heads * cfg.head_dim;
        if std::env::var("HIGGS_PREFILL_GROUP").is_ok_and(|v| v == "0") {
            return Ok(None);
        }
        let mut cand: Vec<usize> = (0..plan.slots.len())
            .filter(|&s| plan.lens[s] > 1)
            .collect();
        if cand.len() < 2 {
            return Ok(None);
        }
        // Shortest first, while the padded scores stay within the budget.
        cand.sort_by_key(|&s| (plan.seq_past[s] + plan.lens[s], plan.lens[s]));
        let mut seqs = Vec::new();
        let (mut lmax, mut tmax) = (0usize, 0usize);
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for s in cand {
            let l = lmax.max(plan.lens[s]);
            let t = tmax
                .max(plan.seq_past[s] + plan.lens[s])
                .min(cache.max_len());
            let (l2, h2) = (lo.min(plan.slots[s]), hi.max(plan.slots[s]));
            // f32 scores, and the elements of the slot range's keys copied per layer.
            let scores = (seqs.len() + 1) * heads * l * t;
            let copied = (h2 + 1 - l2) * kv_rows_per_slot * t;
            if scores > PREFILL_GROUP_SCORES || copied > PREFILL_GROUP_SCORES {
                break;
            }
            seqs.push(s);
            (lmax, tmax, lo, hi) = (l, t, l2, h2);
        }
        if seqs.len() < 2 {
            return Ok(None);
        }
        let n = seqs.len();
        let mut q_rows = Vec::with_capacity(n * lmax);
        let mut valid = Vec::new();
        let mut mask = vec![f32::MIN; n * lmax * tmax];
        for (i, &s) in seqs.iter().enumerate() {
            let (start, len, past) = (plan.seq_start[s], plan.lens[s], plan.seq_past[s]);
            for j in 0..lmax {
                let m = &mut mask[(i * lmax + j) * tmax..(i * lmax + j + 1) * tmax];
                if j < len {
                    q_rows.push((start + j) as u32);
                    valid.push((i * lmax + j) as u32);
                    m[..=past + j].fill(0.0);
                } else {
                    q_rows.push(start as u32);
                    m[0] = 0.0;
                }
            }
        }
        let r = hi + 1 - lo;
        let offs: Vec<u32> = seqs.iter().map(|&s| (plan.slots[s] - lo) as u32).collect();
        let n_valid = valid.len();
        Ok(Some(Self {
            lo,
            r,
            offs: Tensor::from_vec(offs, n, dev)?,
            q_rows: Tensor::from_vec(q_rows, n * lmax, dev)?,
            valid: Tensor::from_vec(valid, n_valid, dev)?,
            mask: Tensor::from_vec(mask, (n, 1, 1, lmax, tmax), dev)?,
            seqs,
            lmax,
            tmax,
        }))
    }
}

/// Puts attention outputs back in packed row order. A piece with no row list is already the
/// whole `[N, ..]` result.
fn assemble_rows(
    mut pieces: Vec<(Vec<u32>, Tensor)>,
    n: usize,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    if pieces.len() == 1 {
        let rows = &pieces[0].0;
        if rows.is_empty() || rows.iter().enumerate().all(|(i, &r)| r == i as u32) {
            return Ok(pieces.remove(0).1);
        }
    }
    let mut inverse = vec![0u32; n];
    let mut at = 0u32;
    let mut parts = Vec::with_capacity(pieces.len());
    for (rows, t) in pieces {
        for r in rows {
            inverse[r as usize] = at;
            at += 1;
        }
        parts.push(t);
    }
    let cat = Tensor::cat(&parts, 0)?;
    cat.index_select(&Tensor::from_vec(inverse, n, dev)?, 0)
}

/// Device-side routing tensors built once per forward.
struct RowMasks {
    /// `[N, 1]` u8 mask of audio rows (None when the batch has no audio rows).
    audio: Option<Tensor>,
    text_idx: Option<Tensor>,
    audio_idx: Option<Tensor>,
}

impl RowMasks {
    fn new(plan: &Plan, dev: &Device) -> candle_core::Result<Self> {
        if plan.audio_rows.is_empty() {
            return Ok(Self {
                audio: None,
                text_idx: None,
                audio_idx: None,
            });
        }
        let n = plan.kinds.len();
        let m: Vec<u8> = plan.audio_flags.iter().map(|&f| f as u8).collect();
        Ok(Self {
            audio: Some(Tensor::from_vec(m, (n, 1), dev)?),
            text_idx: if plan.text_rows.is_empty() {
                None
            } else {
                Some(Tensor::from_vec(
                    plan.text_rows.clone(),
                    plan.text_rows.len(),
                    dev,
                )?)
            },
            audio_idx: Some(Tensor::from_vec(
                plan.audio_rows.clone(),
                plan.audio_rows.len(),
                dev,
            )?),
        })
    }

    fn text_idx(&self) -> candle_core::Result<&Tensor> {
        self.text_idx
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("no text rows".into()))
    }

    fn audio_idx(&self) -> candle_core::Result<&Tensor> {
        self.audio_idx
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("no audio rows".into()))
    }
}

/// Row-wise select: `mask[i] ? on_true[i] : on_false[i]` for a `[N, 1]` mask.
fn select_rows(mask: &Tensor, on_true: &Tensor, on_false: &Tensor) -> candle_core::Result<Tensor> {
    mask.broadcast_as(on_true.shape())?
        .where_cond(on_true, on_false)
}

trait EmbeddingRows {
    fn embedding_rows(&self, ids: &Tensor) -> candle_core::Result<Tensor>;
}

impl EmbeddingRows for Tensor {
    fn embedding_rows(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.index_select(ids, 0)
    }
}
