//! Random Higgs Audio v2 checkpoints in the real on-disk layouts, for tests, demos and GPU
//! benchmarks (real weights cannot be downloaded everywhere; never fake them elsewhere).
//!
//! Weights follow the statistics the golden fixtures use (Linear N(0, 1/fan_in), embeddings N(0,1),
//! codebook embeddings N(0, 1/n_codebooks), norms 1 + 0.25 N(0,1)) so every layer matters. Tensors
//! are generated lazily while the safetensors file is written, in parallel chunks, so a full-size
//! (5.8 B parameter) model is created on the GPU host itself in seconds without holding it twice in
//! memory.

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::CheckpointLayout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Fixture-sized: hidden 32, 3 layers, real vocabulary and audio vocabulary.
    Tiny,
    /// The real Higgs Audio v2 3B geometry (Llama-3.2-3B + DualFFN on all 28 layers).
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    Bf16,
}

/// Geometry of a generated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub num_codebooks: usize,
    pub codebook_size: usize,
    /// Indices of DualFFN layers; the others are fast-forward (legacy layout only).
    pub dual_ffn_layers: Vec<usize>,
}

impl Geometry {
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::Tiny => Self {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 8,
                vocab_size: 128256,
                num_codebooks: 8,
                codebook_size: 1024,
                dual_ffn_layers: vec![0, 1, 2],
            },
            Preset::Full => Self {
                hidden_size: 3072,
                intermediate_size: 8192,
                num_hidden_layers: 28,
                num_attention_heads: 24,
                num_key_value_heads: 8,
                head_dim: 128,
                vocab_size: 128256,
                num_codebooks: 8,
                codebook_size: 1024,
                dual_ffn_layers: (0..28).collect(),
            },
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct RandomCheckpoint {
    pub geometry: Geometry,
    pub layout: CheckpointLayout,
    pub dtype: WeightDtype,
    pub seed: u64,
    /// Split the weights into shards of at most this many bytes (with an index), like the hub.
    pub max_shard_bytes: Option<u64>,
    /// Write `text_lm_head`. transformers' `save_pretrained` omits it by default
    /// (`use_text_head=False`); `false` writes such a checkpoint.
    pub text_head: bool,
}

impl RandomCheckpoint {
    pub fn new(preset: Preset, layout: CheckpointLayout) -> Self {
        Self {
            geometry: Geometry::preset(preset),
            layout,
            dtype: match preset {
                Preset::Tiny => WeightDtype::F32,
                Preset::Full => WeightDtype::Bf16,
            },
            seed: 20250803,
            max_shard_bytes: match preset {
                Preset::Tiny => None,
                Preset::Full => Some(5_000_000_000),
            },
            text_head: true,
        }
    }

    /// `config.json` for this checkpoint, in the layout's own schema.
    pub fn config_json(&self) -> serde_json::Value {
        let g = &self.geometry;
        let dtype = match self.dtype {
            WeightDtype::F32 => "float32",
            WeightDtype::Bf16 => "bfloat16",
        };
        match self.layout {
            CheckpointLayout::Legacy => serde_json::json!({
                "architectures": ["HiggsAudioModel"],
                "model_type": "higgs_audio",
                "audio_adapter_type": "dual_ffn_fast_forward",
                "audio_dual_ffn_layers": g.dual_ffn_layers,
                "audio_num_codebooks": g.num_codebooks,
                "audio_codebook_size": g.codebook_size,
                "audio_stream_bos_id": g.codebook_size,
                "audio_stream_eos_id": g.codebook_size + 1,
                "audio_in_token_idx": 128015,
                "audio_out_token_idx": 128016,
                "audio_out_bos_token_id": 128013,
                "audio_eos_token_id": 128012,
                "audio_bos_token": "<|audio_bos|>",
                "audio_eos_token": "<|audio_eos|>",
                "audio_in_token": "<|AUDIO|>",
                "audio_out_token": "<|AUDIO_OUT|>",
                "audio_out_bos_token": "<|audio_out_bos|>",
                "pad_token_id": 128001,
                "audio_decoder_proj_num_layers": 0,
                "audio_embed_avg": false,
                "audio_ffn_hidden_size": g.hidden_size,
                "audio_ffn_intermediate_size": g.intermediate_size,
                "encode_audio_in_tokens": true,
                "encode_whisper_embed": false,
                "skip_audio_tower": true,
                "use_audio_out_embed_projector": false,
                "use_audio_out_self_attention": 0,
                "use_delay_pattern": true,
                "use_rq_transformer": false,
                "hidden_size": g.hidden_size,
                "torch_dtype": dtype,
                "text_config": {
                    "model_type": "llama",
                    "architectures": ["LlamaForCausalLM"],
                    "hidden_size": g.hidden_size,
                    "intermediate_size": g.intermediate_size,
                    "num_hidden_layers": g.num_hidden_layers,
                    "num_attention_heads": g.num_attention_heads,
                    "num_key_value_heads": g.num_key_value_heads,
                    "head_dim": g.head_dim,
                    "vocab_size": g.vocab_size,
                    "hidden_act": "silu",
                    "attention_bias": false,
                    "mlp_bias": false,
                    "rms_norm_eps": 1e-5,
                    "rope_theta": 500000.0,
                    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                    "max_position_embeddings": 131072,
                    "bos_token_id": 128000,
                    "eos_token_id": 128001,
                    "tie_word_embeddings": true,
                    "torch_dtype": dtype,
                }
            }),
            CheckpointLayout::Hf => serde_json::json!({
                "architectures": ["HiggsAudioV2ForConditionalGeneration"],
                "model_type": "higgs_audio_v2",
                "text_config": null,
                "hidden_size": g.hidden_size,
                "intermediate_size": g.intermediate_size,
                "num_hidden_layers": g.num_hidden_layers,
                "num_attention_heads": g.num_attention_heads,
                "num_key_value_heads": g.num_key_value_heads,
                "head_dim": g.head_dim,
                "vocab_size": g.vocab_size,
                "hidden_act": "silu",
                "rms_norm_eps": 1e-5,
                "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                    "low_freq_factor": 0.125, "high_freq_factor": 0.5,
                                    "original_max_position_embeddings": 1024},
                "num_codebooks": g.num_codebooks,
                "codebook_size": g.codebook_size + 2,
                "audio_token_id": 128016,
                "audio_bos_token_id": 128013,
                "audio_delay_token_id": 128014,
                "audio_stream_bos_id": g.codebook_size,
                "audio_stream_eos_id": g.codebook_size + 1,
                "pad_token_id": 128001,
                "eos_token_id": 128009,
                "tie_word_embeddings": false,
                "dtype": dtype,
            }),
        }
    }

    /// The tensors of the checkpoint: (legacy name, shape, init).
    fn tensors(&self) -> Vec<(String, Vec<usize>, Init)> {
        let g = &self.geometry;
        let (h, i) = (g.hidden_size, g.intermediate_size);
        let q = g.num_attention_heads * g.head_dim;
        let kv = g.num_key_value_heads * g.head_dim;
        let av = g.num_codebooks * (g.codebook_size + 2);
        let mut v = vec![
            (
                "embed_tokens.weight".to_string(),
                vec![g.vocab_size, h],
                Init::Normal(1.0),
            ),
            (
                "audio_codebook_embeddings.weight".into(),
                vec![av, h],
                Init::Normal((1.0 / g.num_codebooks as f32).sqrt()),
            ),
        ];
        for l in 0..g.num_hidden_layers {
            let p = format!("layers.{l}");
            let lin = |name: String, out: usize, inp: usize| {
                (
                    name,
                    vec![out, inp],
                    Init::Normal(1.0 / (inp as f32).sqrt()),
                )
            };
            v.push(lin(format!("{p}.self_attn.q_proj.weight"), q, h));
            v.push(lin(format!("{p}.self_attn.k_proj.weight"), kv, h));
            v.push(lin(format!("{p}.self_attn.v_proj.weight"), kv, h));
            v.push(lin(format!("{p}.self_attn.o_proj.weight"), h, q));
            let mut mlps = vec!["mlp"];
            let mut norms = vec!["input_layernorm", "post_attention_layernorm"];
            if g.dual_ffn_layers.contains(&l) {
                mlps.push("audio_mlp");
                norms.extend(["audio_input_layernorm", "audio_post_attention_layernorm"]);
            }
            for m in mlps {
                v.push(lin(format!("{p}.{m}.gate_proj.weight"), i, h));
                v.push(lin(format!("{p}.{m}.up_proj.weight"), i, h));
                v.push(lin(format!("{p}.{m}.down_proj.weight"), h, i));
            }
            for n in norms {
                v.push((format!("{p}.{n}.weight"), vec![h], Init::Norm));
            }
        }
        v.push(("norm.weight".into(), vec![h], Init::Norm));
        let head = Init::Normal(1.0 / (h as f32).sqrt());
        v.push((TEXT_HEAD.into(), vec![g.vocab_size, h], head));
        v.push((
            "audio_decoder_proj.audio_lm_head.weight".into(),
            vec![av, h],
            head,
        ));
        v
    }

    /// Writes `config.json`, `generation_config.json` and the weights into `dir` (created).
    /// Returns the weight files written.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        if self.layout == CheckpointLayout::Hf
            && self.geometry.dual_ffn_layers.len() != self.geometry.num_hidden_layers
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the transformers layout has DualFFN on every layer; fast-forward layers need the legacy layout",
            ));
        }
        write_json(&dir.join("config.json"), &self.config_json())?;
        write_json(
            &dir.join("generation_config.json"),
            &serde_json::json!({"bos_token_id": 128000, "eos_token_id": 128001, "pad_token_id": 128001}),
        )?;
        let dtype = match self.dtype {
            WeightDtype::F32 => Dtype::F32,
            WeightDtype::Bf16 => Dtype::BF16,
        };
        let tensors: Vec<(String, LazyTensor)> = self
            .tensors()
            .into_iter()
            .enumerate()
            // Seeds follow the position in the full list, so leaving the text head out keeps
            // every other tensor (and so the audio logits) as it is.
            .filter(|(_, (name, _, _))| self.text_head || name != TEXT_HEAD)
            .map(|(k, (name, shape, init))| {
                let stored = match self.layout {
                    CheckpointLayout::Legacy => name,
                    CheckpointLayout::Hf => hf_name(&name),
                };
                let seed = self
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(k as u64);
                (
                    stored,
                    LazyTensor {
                        shape,
                        dtype,
                        init,
                        seed,
                    },
                )
            })
            .collect();
        // Shard like the hub: consecutive tensors until the size limit.
        let mut shards: Vec<Vec<(String, LazyTensor)>> = vec![Vec::new()];
        let mut size = 0u64;
        let limit = self.max_shard_bytes.unwrap_or(u64::MAX);
        for t in tensors {
            let b = t.1.nbytes() as u64;
            if size > 0 && size + b > limit {
                shards.push(Vec::new());
                size = 0;
            }
            size += b;
            if let Some(last) = shards.last_mut() {
                last.push(t);
            }
        }
        let n = shards.len();
        let mut written = Vec::new();
        let mut weight_map = BTreeMap::new();
        let mut total = 0u64;
        for (si, shard) in shards.into_iter().enumerate() {
            let fname = if n == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{:05}.safetensors", si + 1, n)
            };
            for (name, t) in &shard {
                weight_map.insert(name.clone(), fname.clone());
                total += t.nbytes() as u64;
            }
            let path = dir.join(&fname);
            let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
            safetensors::serialize_to_file(shard, Some(meta), &path)
                .map_err(|e| std::io::Error::other(format!("writing {}: {e}", path.display())))?;
            written.push(path);
        }
        if n > 1 {
            write_json(
                &dir.join("model.safetensors.index.json"),
                &serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
            )?;
        }
        Ok(written)
    }
}

/// Legacy name of the text head, the one tensor a checkpoint may lack.
const TEXT_HEAD: &str = "audio_decoder_proj.text_lm_head.weight";

/// Legacy tensor name -> transformers-native name (convert_higgs_audio_v2_to_hf.py).
pub fn hf_name(legacy: &str) -> String {
    if let Some(rest) = legacy.strip_prefix("audio_codebook_embeddings.") {
        format!("model.embed_audio_tokens.embed_audio_tokens.{rest}")
    } else if let Some(rest) = legacy.strip_prefix("audio_decoder_proj.") {
        rest.to_string()
    } else {
        format!("model.{legacy}")
    }
}

fn write_json(path: &Path, v: &serde_json::Value) -> std::io::Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    std::fs::write(path, s)
}

#[derive(Debug, Clone, Copy)]
enum Init {
    Normal(f32),
    /// RMSNorm weight: 1 + 0.25 N(0, 1).
    Norm,
}

struct LazyTensor {
    shape: Vec<usize>,
    dtype: Dtype,
    init: Init,
    seed: u64,
}

impl LazyTensor {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    fn nbytes(&self) -> usize {
        self.numel() * self.dtype.bitsize() / 8
    }
}

/// Elements per independently seeded chunk: the output does not depend on the thread count.
const CHUNK: usize = 1 << 20;

impl View for LazyTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data_len(&self) -> usize {
        self.nbytes()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let n = self.numel();
        let width = self.dtype.bitsize() / 8;
        let mut out = vec![0u8; n * width];
        let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
        let chunks: Vec<(usize, &mut [u8])> = out.chunks_mut(CHUNK * width).enumerate().collect();
        let per = chunks.len().div_ceil(threads).max(1);
        let mut groups: Vec<Vec<(usize, &mut [u8])>> = Vec::new();
        let mut it = chunks.into_iter().peekable();
        while it.peek().is_some() {
            groups.push(it.by_ref().take(per).collect());
        }
        std::thread::scope(|s| {
            for group in groups {
                s.spawn(move || {
                    for (ci, buf) in group {
                        let mut rng = StdRng::seed_from_u64(
                            self.seed ^ (ci as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
                        );
                        for b in buf.chunks_exact_mut(width) {
                            let z: f32 = rng.sample(StandardNormal);
                            let x = match self.init {
                                Init::Normal(std) => z * std,
                                Init::Norm => 1.0 + 0.25 * z,
                            };
                            if width == 4 {
                                b.copy_from_slice(&x.to_le_bytes());
                            } else {
                                b.copy_from_slice(&half::bf16::from_f32(x).to_le_bytes());
                            }
                        }
                    }
                });
            }
        });
        Cow::Owned(out)
    }
}

/// The Higgs special tokens and their real ids (the real tokenizer's `added_tokens`).
pub fn special_token_name(id: u32) -> Option<String> {
    let named = match id {
        128000 => "<|begin_of_text|>",
        128001 => "<|end_of_text|>",
        128002 => "<|reserved_special_token_0|>",
        128003 => "<|reserved_special_token_1|>",
        128004 => "<|finetune_right_pad_id|>",
        128005 => "<|reserved_special_token_2|>",
        128006 => "<|start_header_id|>",
        128007 => "<|end_header_id|>",
        128008 => "<|eom_id|>",
        128009 => "<|eot_id|>",
        128010 => "<|python_tag|>",
        128011 => "<|audio_bos|>",
        128012 => "<|audio_eos|>",
        128013 => "<|audio_out_bos|>",
        128015 => "<|AUDIO|>",
        128016 => "<|AUDIO_OUT|>",
        128017 => "<|recipient|>",
        128018 => "<|scene_desc_start|>",
        128019 => "<|scene_desc_end|>",
        128020 => "<|generation_instruction_start|>",
        128021 => "<|generation_instruction_end|>",
        128022 => "<SE>",
        128023 => "</SE>",
        128024 => "<SE_s>",
        128025 => "</SE_s>",
        128026 => "<SE_e>",
        128027 => "</SE_e>",
        128014 | 128028..=128255 => {
            return Some(format!("<|reserved_special_token_{}|>", id - 128008))
        }
        _ => return None,
    };
    Some(named.to_string())
}

/// Id of `<|begin_of_text|>`, the first special token.
pub const FIRST_SPECIAL_ID: u32 = 128000;

/// GPT-2 byte-to-unicode table used by byte-level BPE.
fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).unwrap_or(' ');
    }
    table
}

/// A small byte-level BPE `tokenizer.json` (256 byte tokens, no merges, unreachable fillers up to
/// id 128000) carrying the Higgs special
/// tokens at their real ids, with the Llama-3 pre-tokenizer. Good enough to drive the whole stack
/// on random checkpoints; use the real tokenizer for real weights.
pub fn small_tokenizer_json() -> serde_json::Value {
    let table = bytes_to_unicode();
    // The `tokenizers` library numbers added tokens after the model vocabulary, so the vocabulary
    // must fill ids 0..128000 for the specials to land on their real ids. Ids past the 256 byte
    // symbols are unreachable fillers (there are no merges).
    let mut vocab: serde_json::Map<String, serde_json::Value> = table
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), serde_json::Value::from(i)))
        .collect();
    for i in table.len()..FIRST_SPECIAL_ID as usize {
        vocab.insert(format!("<|unused_{i}|>"), serde_json::Value::from(i));
    }
    let added: Vec<serde_json::Value> = (128000u32..128256)
        .filter_map(|id| {
            special_token_name(id).map(|content| {
                serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                                   "rstrip": false, "normalized": false, "special": true})
            })
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": true, "vocab": vocab, "merges": []}
    })
}

/// Writes the tokenizer files into `dir`: a copy of `given` (plus its sibling
/// `tokenizer_config.json` / `special_tokens_map.json` if present), or the small generated one.
pub fn write_tokenizer(dir: &Path, given: Option<&Path>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    match given {
        Some(src) => {
            std::fs::copy(src, dir.join("tokenizer.json"))?;
            if let Some(parent) = src.parent() {
                for f in ["tokenizer_config.json", "special_tokens_map.json"] {
                    let p = parent.join(f);
                    if p.exists() {
                        std::fs::copy(&p, dir.join(f))?;
                    }
                }
            }
            Ok(())
        }
        None => {
            write_json(&dir.join("tokenizer.json"), &small_tokenizer_json())?;
            write_json(
                &dir.join("special_tokens_map.json"),
                &serde_json::json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_tokens_have_real_ids() {
        assert_eq!(
            special_token_name(128013).as_deref(),
            Some("<|audio_out_bos|>")
        );
        assert_eq!(
            special_token_name(128014).as_deref(),
            Some("<|reserved_special_token_6|>")
        );
        assert_eq!(
            special_token_name(128028).as_deref(),
            Some("<|reserved_special_token_20|>")
        );
        assert_eq!(
            special_token_name(128255).as_deref(),
            Some("<|reserved_special_token_247|>")
        );
        assert_eq!(special_token_name(5), None);
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
    }

    #[test]
    fn hf_names_follow_the_converter() {
        assert_eq!(
            hf_name("layers.0.mlp.up_proj.weight"),
            "model.layers.0.mlp.up_proj.weight"
        );
        assert_eq!(
            hf_name("audio_decoder_proj.audio_lm_head.weight"),
            "audio_lm_head.weight"
        );
        assert_eq!(
            hf_name("audio_codebook_embeddings.weight"),
            "model.embed_audio_tokens.embed_audio_tokens.weight"
        );
    }
}
