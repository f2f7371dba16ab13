//! Model configuration, mirroring `configuration_higgs_audio.py` (boson-ai/higgs-audio @ f04f5df) and
//! transformers' `configuration_higgs_audio_v2.py`.
//!
//! `config.json` exists in two published layouts (reference spec §1.1): the legacy `higgs_audio`
//! layout with a nested Llama `text_config`, and the transformers-native flat `higgs_audio_v2`
//! layout. Both are read into [`RawConfig`]-style serde structs exactly as on disk and resolved into
//! one [`HiggsConfig`]; every shape the model uses comes from here.

use serde::Deserialize;
use std::path::Path;

use crate::error::LoadError;

/// Which on-disk layout a checkpoint uses. Determines tensor names as well as config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointLayout {
    /// `model_type: higgs_audio` (boson_multimodal): nested `text_config`, names without `model.`.
    Legacy,
    /// `model_type: higgs_audio_v2` (transformers): flat config, `model.`-prefixed names.
    Hf,
}

impl std::fmt::Display for CheckpointLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Legacy => "legacy (higgs_audio)",
            Self::Hf => "transformers (higgs_audio_v2)",
        })
    }
}

/// llama3 RoPE frequency scaling (`rope_scaling` / `rope_parameters` with `rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Resolved configuration of the Higgs Audio v2 generation model.
#[derive(Debug, Clone, PartialEq)]
pub struct HiggsConfig {
    pub layout: CheckpointLayout,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Per layer: `true` for a DualFFN layer, `false` for a fast-forward layer (audio positions
    /// pass through unchanged; text positions do not attend to audio positions).
    pub dual_ffn_layers: Vec<bool>,
    pub num_codebooks: usize,
    /// Real codes per codebook (1024). Each codebook has `codebook_size + 2` rows (BOS, EOS).
    pub codebook_size: usize,
    pub stream_bos_id: u32,
    pub stream_eos_id: u32,
    pub audio_in_token_id: u32,
    pub audio_out_token_id: u32,
    pub audio_out_bos_token_id: u32,
    pub audio_eos_token_id: u32,
    pub pad_token_id: u32,
    pub use_delay_pattern: bool,
    /// Whether `<|AUDIO|>` placeholders carry codes (generation.py path).
    pub encode_audio_in_tokens: bool,
    /// `audio_embed_avg`: mean instead of sum over codebooks.
    pub audio_embed_avg: bool,
    /// `torch_dtype` recorded in the config, if any (informational).
    pub torch_dtype: Option<String>,
    /// Whether the checkpoint has a text head (`text_lm_head`). No config key says so: a
    /// transformers `save_pretrained` writes none by default (`use_text_head=False`), so
    /// `config.json` parsing says `true` and the model loader sets what the weights hold. Without
    /// one, generation is audio only and ends on the audio EOS.
    pub text_head: bool,
}

impl HiggsConfig {
    /// Rows per codebook in the audio embedding and audio head (codes + BOS + EOS).
    pub fn codebook_rows(&self) -> usize {
        self.codebook_size + 2
    }

    /// Total rows of `audio_codebook_embeddings` / `audio_lm_head`.
    pub fn audio_vocab(&self) -> usize {
        self.num_codebooks * self.codebook_rows()
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    pub fn has_fast_forward_layers(&self) -> bool {
        self.dual_ffn_layers.iter().any(|d| !d)
    }

    /// Reads and resolves `config.json` (either layout).
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_json_str(&text).map_err(|e| e.with_path(path))
    }

    /// Parses a `config.json` document (either layout).
    pub fn from_json_str(text: &str) -> Result<Self, LoadError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| LoadError::config(format!("not valid JSON: {e}")))?;
        let model_type = value
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("<missing>")
            .to_string();
        match model_type.as_str() {
            "higgs_audio" => {
                let raw: LegacyRaw = serde_json::from_value(value)
                    .map_err(|e| LoadError::config(format!("legacy higgs_audio config: {e}")))?;
                raw.resolve()
            }
            "higgs_audio_v2" => {
                let raw: HfRaw = serde_json::from_value(value)
                    .map_err(|e| LoadError::config(format!("higgs_audio_v2 config: {e}")))?;
                raw.resolve()
            }
            other => Err(LoadError::config(format!(
                "unsupported `model_type` {other:?}: expected \"higgs_audio\" (legacy Higgs Audio v2 \
                 checkpoint, e.g. bosonai/higgs-audio-v2-generation-3B-base before the transformers \
                 conversion) or \"higgs_audio_v2\" (transformers-native layout)"
            ))),
        }
    }

    fn validate(self) -> Result<Self, LoadError> {
        let err = |m: String| Err(LoadError::config(m));
        if self.hidden_size == 0 || self.num_hidden_layers == 0 || self.num_attention_heads == 0 {
            return err(
                "`hidden_size`, `num_hidden_layers` and `num_attention_heads` must be > 0".into(),
            );
        }
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return err(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return err(format!(
                "`head_dim` must be even and > 0, got {}",
                self.head_dim
            ));
        }
        if self.num_codebooks == 0 || self.codebook_size == 0 {
            return err("`audio_num_codebooks` and `audio_codebook_size` must be > 0".into());
        }
        let rows = self.codebook_rows() as u32;
        if self.stream_bos_id >= rows || self.stream_eos_id >= rows {
            return err(format!(
                "audio stream bos/eos ids ({}, {}) must be < codebook rows ({rows})",
                self.stream_bos_id, self.stream_eos_id
            ));
        }
        for (name, id) in [
            ("audio_in_token_idx", self.audio_in_token_id),
            ("audio_out_token_idx", self.audio_out_token_id),
            ("audio_out_bos_token_id", self.audio_out_bos_token_id),
            ("audio_eos_token_id", self.audio_eos_token_id),
        ] {
            if id as usize >= self.vocab_size {
                return err(format!(
                    "`{name}` = {id} is outside the vocabulary ({})",
                    self.vocab_size
                ));
            }
        }
        Ok(self)
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct RopeScalingRaw {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
    rope_theta: Option<f64>,
}

impl RopeScalingRaw {
    fn resolve(&self) -> Result<Option<Llama3RopeScaling>, LoadError> {
        match self.rope_type.as_deref() {
            None | Some("default") => Ok(None),
            Some("llama3") => {
                let need = |v: Option<f64>, k: &str| {
                    v.ok_or_else(|| LoadError::config(format!("llama3 rope scaling lacks `{k}`")))
                };
                Ok(Some(Llama3RopeScaling {
                    factor: need(self.factor, "factor")?,
                    low_freq_factor: need(self.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(self.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: need(
                        self.original_max_position_embeddings,
                        "original_max_position_embeddings",
                    )?,
                }))
            }
            Some(other) => Err(LoadError::config(format!(
                "unsupported rope type {other:?}: only \"llama3\" and \"default\" are implemented"
            ))),
        }
    }
}

/// The nested Llama `text_config` of the legacy layout.
#[derive(Debug, Deserialize)]
struct TextConfigRaw {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeScalingRaw>,
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    500000.0
}
fn default_codebooks() -> usize {
    8
}
fn default_codebook_size() -> usize {
    1024
}

/// Legacy `higgs_audio` config.json, as on disk (keys we read; the rest is ignored).
#[derive(Debug, Deserialize)]
struct LegacyRaw {
    text_config: Option<TextConfigRaw>,
    audio_adapter_type: Option<String>,
    audio_dual_ffn_layers: Option<Vec<usize>>,
    #[serde(default = "default_codebooks")]
    audio_num_codebooks: usize,
    #[serde(default = "default_codebook_size")]
    audio_codebook_size: usize,
    audio_stream_bos_id: Option<u32>,
    audio_stream_eos_id: Option<u32>,
    audio_in_token_idx: Option<u32>,
    audio_out_token_idx: Option<u32>,
    audio_out_bos_token_id: Option<u32>,
    audio_eos_token_id: Option<u32>,
    pad_token_id: Option<u32>,
    #[serde(default = "default_true")]
    use_delay_pattern: bool,
    #[serde(default = "default_true")]
    encode_audio_in_tokens: bool,
    #[serde(default)]
    audio_embed_avg: bool,
    #[serde(default)]
    use_audio_out_self_attention: serde_json::Value,
    #[serde(default)]
    audio_decoder_proj_num_layers: Option<usize>,
    #[serde(default)]
    use_audio_out_embed_projector: Option<bool>,
    #[serde(default)]
    use_rq_transformer: Option<bool>,
    #[serde(default)]
    encode_whisper_embed: Option<bool>,
    torch_dtype: Option<String>,
}

fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => false,
    }
}

fn check_text_config(t: &TextConfigRaw) -> Result<(), LoadError> {
    if let Some(act) = t.hidden_act.as_deref() {
        if act != "silu" {
            return Err(LoadError::config(format!(
                "text_config.hidden_act {act:?} is not supported (Llama uses \"silu\")"
            )));
        }
    }
    if t.attention_bias || t.mlp_bias {
        return Err(LoadError::config(
            "text_config.attention_bias / mlp_bias = true is not supported (Llama-3.2 has no biases)".into(),
        ));
    }
    Ok(())
}

impl LegacyRaw {
    fn resolve(self) -> Result<HiggsConfig, LoadError> {
        let t = self.text_config.ok_or_else(|| {
            LoadError::config(
                "legacy config has no `text_config` (null or missing). This happens with repos \
                 switched to the transformers schema but still marked `higgs_audio`; use a \
                 checkpoint whose config.json has the nested Llama text_config"
                    .into(),
            )
        })?;
        check_text_config(&t)?;
        if truthy(&self.use_audio_out_self_attention) {
            return Err(LoadError::config(
                "`use_audio_out_self_attention` is set; the separate audio attention is not part \
                 of Higgs Audio v2 and is not implemented"
                    .into(),
            ));
        }
        if self.audio_decoder_proj_num_layers.unwrap_or(0) > 0 {
            return Err(LoadError::config(
                "`audio_decoder_proj_num_layers` > 0 is not supported (Higgs Audio v2 uses 0)"
                    .into(),
            ));
        }
        if self.use_audio_out_embed_projector == Some(true) || self.use_rq_transformer == Some(true)
        {
            return Err(LoadError::config(
                "`use_audio_out_embed_projector` / `use_rq_transformer` are not supported".into(),
            ));
        }
        if self.encode_whisper_embed == Some(true) {
            return Err(LoadError::config(
                "`encode_whisper_embed` = true needs the Whisper audio tower, which the Higgs \
                 Audio v2 generation model does not have"
                    .into(),
            ));
        }
        let n_layers = t.num_hidden_layers;
        let dual = match self.audio_adapter_type.as_deref().unwrap_or("dual_ffn") {
            "dual_ffn" => vec![true; n_layers],
            "dual_ffn_fast_forward" => {
                let list = self.audio_dual_ffn_layers.ok_or_else(|| {
                    LoadError::config(
                        "`dual_ffn_fast_forward` adapter needs `audio_dual_ffn_layers`".into(),
                    )
                })?;
                let mut v = vec![false; n_layers];
                for i in list {
                    if i >= n_layers {
                        return Err(LoadError::config(format!(
                            "`audio_dual_ffn_layers` names layer {i} but the model has {n_layers} layers"
                        )));
                    }
                    v[i] = true;
                }
                v
            }
            other => {
                return Err(LoadError::config(format!(
                    "unsupported `audio_adapter_type` {other:?}: expected \"dual_ffn\" or \
                     \"dual_ffn_fast_forward\""
                )))
            }
        };
        let rope_scaling = match &t.rope_scaling {
            Some(r) => r.resolve()?,
            None => None,
        };
        HiggsConfig {
            layout: CheckpointLayout::Legacy,
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            num_hidden_layers: n_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads.unwrap_or(t.num_attention_heads),
            head_dim: t
                .head_dim
                .unwrap_or(t.hidden_size / t.num_attention_heads.max(1)),
            vocab_size: t.vocab_size,
            rms_norm_eps: t.rms_norm_eps,
            rope_theta: t.rope_theta.unwrap_or(default_theta()),
            rope_scaling,
            dual_ffn_layers: dual,
            num_codebooks: self.audio_num_codebooks,
            codebook_size: self.audio_codebook_size,
            stream_bos_id: self.audio_stream_bos_id.unwrap_or(1024),
            stream_eos_id: self.audio_stream_eos_id.unwrap_or(1025),
            audio_in_token_id: self.audio_in_token_idx.unwrap_or(128015),
            audio_out_token_id: self.audio_out_token_idx.unwrap_or(128016),
            audio_out_bos_token_id: self.audio_out_bos_token_id.unwrap_or(128013),
            audio_eos_token_id: self.audio_eos_token_id.unwrap_or(128012),
            pad_token_id: self.pad_token_id.unwrap_or(128001),
            use_delay_pattern: self.use_delay_pattern,
            encode_audio_in_tokens: self.encode_audio_in_tokens,
            audio_embed_avg: self.audio_embed_avg,
            torch_dtype: self.torch_dtype,
            text_head: true,
        }
        .validate()
    }
}

/// transformers-native `higgs_audio_v2` config.json (flat Llama fields).
#[derive(Debug, Deserialize)]
struct HfRaw {
    /// The flat Llama fields, shared with the legacy `text_config`.
    #[serde(flatten)]
    llama: TextConfigRaw,
    rope_parameters: Option<RopeScalingRaw>,
    #[serde(default = "default_codebooks")]
    num_codebooks: usize,
    /// Counts the BOS/EOS rows: 1026 for the real model.
    codebook_size: Option<usize>,
    audio_token_id: Option<u32>,
    audio_bos_token_id: Option<u32>,
    audio_eos_token_id: Option<u32>,
    audio_in_token_id: Option<u32>,
    audio_stream_bos_id: Option<u32>,
    audio_stream_eos_id: Option<u32>,
    pad_token_id: Option<u32>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
}

impl HfRaw {
    fn resolve(self) -> Result<HiggsConfig, LoadError> {
        let t = &self.llama;
        check_text_config(t)?;
        // Newer transformers put theta inside `rope_parameters`; older ones use `rope_theta` +
        // `rope_scaling`. The two llama3 parameterisations are mathematically identical (§1.3).
        let rope = self.rope_parameters.as_ref().or(t.rope_scaling.as_ref());
        let rope_theta = t
            .rope_theta
            .or_else(|| rope.and_then(|r| r.rope_theta))
            .unwrap_or(default_theta());
        let rope_scaling = match rope {
            Some(r) => r.resolve()?,
            None => None,
        };
        let rows = self.codebook_size.unwrap_or(1026);
        if rows < 3 {
            return Err(LoadError::config(format!(
                "`codebook_size` {rows} is too small (it counts the BOS and EOS rows, 1026 for the real model)"
            )));
        }
        HiggsConfig {
            layout: CheckpointLayout::Hf,
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads.unwrap_or(t.num_attention_heads),
            head_dim: t
                .head_dim
                .unwrap_or(t.hidden_size / t.num_attention_heads.max(1)),
            vocab_size: t.vocab_size,
            rms_norm_eps: t.rms_norm_eps,
            rope_theta,
            rope_scaling,
            // The transformers port gives every layer a DualFFN.
            dual_ffn_layers: vec![true; t.num_hidden_layers],
            num_codebooks: self.num_codebooks,
            codebook_size: rows - 2,
            stream_bos_id: self.audio_stream_bos_id.unwrap_or(rows as u32 - 2),
            stream_eos_id: self.audio_stream_eos_id.unwrap_or(rows as u32 - 1),
            audio_in_token_id: self.audio_in_token_id.unwrap_or(128015),
            audio_out_token_id: self.audio_token_id.unwrap_or(128016),
            audio_out_bos_token_id: self.audio_bos_token_id.unwrap_or(128013),
            audio_eos_token_id: self.audio_eos_token_id.unwrap_or(128012),
            pad_token_id: self.pad_token_id.unwrap_or(128001),
            use_delay_pattern: true,
            encode_audio_in_tokens: true,
            audio_embed_avg: false,
            torch_dtype: self.torch_dtype.or(self.dtype),
            text_head: true,
        }
        .validate()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn legacy_json(extra: &str) -> String {
        format!(
            r#"{{"model_type":"higgs_audio","audio_adapter_type":"dual_ffn_fast_forward",
            "audio_dual_ffn_layers":[0,2],"audio_num_codebooks":8,"audio_codebook_size":1024,
            {extra}
            "text_config":{{"hidden_size":32,"intermediate_size":64,"num_hidden_layers":3,
            "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":128256,
            "rms_norm_eps":1e-5,"rope_theta":500000.0,"rope_scaling":{{"rope_type":"llama3",
            "factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192}}}}}}"#
        )
    }

    #[test]
    fn legacy_layout_resolves_fast_forward_layers() {
        let c = HiggsConfig::from_json_str(&legacy_json("")).unwrap();
        assert_eq!(c.layout, CheckpointLayout::Legacy);
        assert_eq!(c.dual_ffn_layers, vec![true, false, true]);
        assert_eq!(c.audio_vocab(), 8 * 1026);
        assert_eq!(c.num_key_value_heads, 2);
        assert!(c.rope_scaling.is_some());
    }

    #[test]
    fn dual_ffn_layer_out_of_range_is_rejected() {
        let j = legacy_json("").replace("[0,2]", "[0,7]");
        let e = HiggsConfig::from_json_str(&j).unwrap_err().to_string();
        assert!(e.contains("layer 7"), "{e}");
    }

    #[test]
    fn null_text_config_explains_the_schema_switch() {
        let j = r#"{"model_type":"higgs_audio","text_config":null}"#;
        let e = HiggsConfig::from_json_str(j).unwrap_err().to_string();
        assert!(e.contains("text_config"), "{e}");
    }

    #[test]
    fn unknown_model_type_is_rejected() {
        let e = HiggsConfig::from_json_str(r#"{"model_type":"llama"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"llama\"") && e.contains("higgs_audio_v2"),
            "{e}"
        );
        let e = HiggsConfig::from_json_str("not json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("JSON"), "{e}");
    }

    #[test]
    fn hf_layout_codebook_size_counts_bos_eos() {
        let j = r#"{"model_type":"higgs_audio_v2","hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,
            "vocab_size":128256,"num_codebooks":8,"codebook_size":1026,
            "rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":32.0,
            "low_freq_factor":0.125,"high_freq_factor":0.5,"original_max_position_embeddings":1024}}"#;
        let c = HiggsConfig::from_json_str(j).unwrap();
        assert_eq!(c.layout, CheckpointLayout::Hf);
        assert_eq!(c.codebook_size, 1024);
        assert_eq!((c.stream_bos_id, c.stream_eos_id), (1024, 1025));
        assert_eq!(c.dual_ffn_layers, vec![true, true]);
        assert_eq!(c.rope_theta, 500000.0);
    }

    #[test]
    fn audio_attention_variant_is_rejected() {
        let e = HiggsConfig::from_json_str(&legacy_json(r#""use_audio_out_self_attention":1,"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use_audio_out_self_attention"), "{e}");
    }
}
