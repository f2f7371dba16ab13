//! Tokenizer configuration: mirrors `HiggsAudioTokenizer.__init__` (higgs_audio_tokenizer.py) for the
//! legacy `config.json`, and transformers' `HiggsAudioV2TokenizerConfig` for the native layout.
//!
//! Only values that cannot be read from tensor shapes live here (sample rates, strides, HuBERT
//! head count and norm epsilon, ...). Layer widths always come from the checkpoint tensors.

use crate::error::{CodecError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Which on-disk format a tokenizer directory uses (reference §1.4 / §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointLayout {
    /// `config.json` (`n_filters`, `D`, `ratios`, ...) + `model.pth` with weight-norm `g`/`v` pairs.
    Legacy,
    /// `config.json` with `model_type: higgs_audio_v2_tokenizer` + `model.safetensors`.
    Hf,
}

impl CheckpointLayout {
    /// File holding the weights of this layout, inside the tokenizer directory.
    pub fn weights_file(self) -> &'static str {
        match self {
            Self::Legacy => "model.pth",
            Self::Hf => "model.safetensors",
        }
    }
}

/// The `model_type` of the transformers-native tokenizer config.
pub const HF_MODEL_TYPE: &str = "higgs_audio_v2_tokenizer";

/// HuBERT hyper-parameters that tensor shapes do not reveal (HF `HubertConfig` names).
#[derive(Debug, Clone, PartialEq)]
pub struct HubertConfig {
    pub num_attention_heads: usize,
    pub layer_norm_eps: f64,
    /// Strides of the feature-extractor convs (their kernels come from the tensors).
    pub conv_stride: Vec<usize>,
    pub num_conv_pos_embedding_groups: usize,
}

impl Default for HubertConfig {
    /// HuBERT-base values; used for the legacy checkpoint, which ships no HuBERT config.
    fn default() -> Self {
        Self {
            num_attention_heads: 12,
            layer_norm_eps: 1e-5,
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            num_conv_pos_embedding_groups: 16,
        }
    }
}

impl HubertConfig {
    /// Total stride of the feature extractor (320 samples for HuBERT-base).
    pub fn hop(&self) -> usize {
        self.conv_stride.iter().product()
    }
}

/// HF `HubertConfig` as found in `hubert_base/config.json` or `semantic_model_config`.
#[derive(Debug, Deserialize, Default)]
struct RawHubertConfig {
    num_attention_heads: Option<usize>,
    layer_norm_eps: Option<f64>,
    conv_stride: Option<Vec<usize>>,
    num_conv_pos_embedding_groups: Option<usize>,
    feat_extract_norm: Option<String>,
    do_stable_layer_norm: Option<bool>,
    feat_proj_layer_norm: Option<bool>,
    hidden_act: Option<String>,
}

impl RawHubertConfig {
    fn resolve(self, path: &Path) -> Result<HubertConfig> {
        let bad = |msg: String| CodecError::Config {
            path: path.to_path_buf(),
            msg,
        };
        // Only the HuBERT-base variant (group norm on layer 0, post-LN encoder, projection LN,
        // GELU) is implemented; refuse the others instead of computing something else.
        if let Some(n) = &self.feat_extract_norm {
            if n != "group" {
                return Err(bad(format!(
                    "feat_extract_norm `{n}` unsupported (need `group`)"
                )));
            }
        }
        if self.do_stable_layer_norm == Some(true) {
            return Err(bad("do_stable_layer_norm = true unsupported".into()));
        }
        if self.feat_proj_layer_norm == Some(false) {
            return Err(bad("feat_proj_layer_norm = false unsupported".into()));
        }
        if let Some(a) = &self.hidden_act {
            if a != "gelu" {
                return Err(bad(format!("hidden_act `{a}` unsupported (need `gelu`)")));
            }
        }
        let d = HubertConfig::default();
        let cfg = HubertConfig {
            num_attention_heads: self.num_attention_heads.unwrap_or(d.num_attention_heads),
            layer_norm_eps: self.layer_norm_eps.unwrap_or(d.layer_norm_eps),
            conv_stride: self.conv_stride.unwrap_or(d.conv_stride),
            num_conv_pos_embedding_groups: self
                .num_conv_pos_embedding_groups
                .unwrap_or(d.num_conv_pos_embedding_groups),
        };
        if cfg.num_attention_heads == 0
            || cfg.num_conv_pos_embedding_groups == 0
            || cfg.conv_stride.is_empty()
            || cfg.conv_stride.contains(&0)
        {
            return Err(bad(format!("invalid HuBERT values {cfg:?}")));
        }
        Ok(cfg)
    }
}

/// Legacy `config.json`, splatted into `HiggsAudioTokenizer(**config)` by the reference.
#[derive(Debug, Deserialize)]
struct RawLegacyConfig {
    ratios: Vec<usize>,
    sample_rate: Option<usize>,
    bins: serde_json::Value,
    n_q: Option<usize>,
    codebook_dim: Option<usize>,
    semantic_techer: Option<String>,
    semantic_sample_rate: Option<usize>,
    downsample_mode: Option<String>,
    vq_scale: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
struct RawAcousticConfig {
    downsampling_ratios: Option<Vec<usize>>,
    upsampling_ratios: Option<Vec<usize>>,
}

/// transformers-native `config.json` (`HiggsAudioV2TokenizerConfig`).
#[derive(Debug, Deserialize)]
struct RawHfConfig {
    sample_rate: Option<usize>,
    semantic_sample_rate: Option<usize>,
    downsample_factor: Option<usize>,
    codebook_size: Option<usize>,
    codebook_dim: Option<usize>,
    #[serde(default)]
    acoustic_model_config: RawAcousticConfig,
    #[serde(default)]
    semantic_model_config: RawHubertConfig,
}

/// Resolved tokenizer configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecConfig {
    pub layout: CheckpointLayout,
    /// Audio sample rate of the codec (24000 for the real model).
    pub sample_rate: usize,
    /// Sample rate of the semantic (HuBERT) branch (16000).
    pub semantic_sample_rate: usize,
    /// DAC encoder strides; the decoder uses the same list, in the same order (reference `dac2.Decoder`).
    pub ratios: Vec<usize>,
    /// Number of codebooks; `None` means "as many as the checkpoint holds" (HF layout).
    pub n_q: Option<usize>,
    /// Entries per codebook (`bins`).
    pub codebook_size: usize,
    /// Codebook vector size from the config, checked against the tensors when present.
    pub codebook_dim: Option<usize>,
    /// The constant 320 of `semantic_downsample_factor` (HF `downsample_factor`).
    pub semantic_hop: usize,
    pub hubert: HubertConfig,
}

impl CodecConfig {
    /// Samples per code frame: the product of the strides (960).
    pub fn hop_length(&self) -> usize {
        self.ratios.iter().product()
    }

    /// Frames per second, `ceil(sample_rate / hop)` as in the reference.
    pub fn frame_rate(&self) -> usize {
        self.sample_rate.div_ceil(self.hop_length().max(1))
    }

    /// `int(hop / (sr / semantic_sr) / 320)`: every how many HuBERT frames one is kept.
    pub fn semantic_downsample_factor(&self) -> usize {
        let f = self.hop_length() as f64
            / (self.sample_rate as f64 / self.semantic_sample_rate as f64)
            / self.semantic_hop as f64;
        f.floor() as usize
    }

    /// Reads `dir/config.json`, detects the layout and resolves every value.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = read_to_string(&path)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CodecError::Config {
                path: path.clone(),
                msg: format!("not valid JSON: {e}"),
            })?;
        let obj = value.as_object().ok_or_else(|| CodecError::Config {
            path: path.clone(),
            msg: "top level is not a JSON object".into(),
        })?;
        match obj.get("model_type") {
            Some(serde_json::Value::String(t)) if t == HF_MODEL_TYPE => Self::from_hf(value, &path),
            Some(other) => Err(CodecError::UnknownLayout {
                path,
                msg: format!("model_type {other} is not `{HF_MODEL_TYPE}`"),
            }),
            None if obj.contains_key("ratios") && obj.contains_key("bins") => {
                Self::from_legacy(value, dir, &path)
            }
            None => Err(CodecError::UnknownLayout {
                path,
                msg: "neither a transformers `model_type` nor the legacy keys `ratios`/`bins`"
                    .into(),
            }),
        }
    }

    fn from_legacy(value: serde_json::Value, dir: &Path, path: &Path) -> Result<Self> {
        let bad = |msg: String| CodecError::Config {
            path: path.to_path_buf(),
            msg,
        };
        let raw: RawLegacyConfig =
            serde_json::from_value(value).map_err(|e| bad(format!("legacy keys: {e}")))?;
        let codebook_size = match raw.bins.as_u64() {
            Some(b) if b > 0 => b as usize,
            _ => {
                return Err(bad(format!(
                    "`bins` = {} unsupported: only an integer (residual VQ) is implemented, not FSQ levels",
                    raw.bins
                )))
            }
        };
        if let Some(t) = &raw.semantic_techer {
            if !t.starts_with("hubert_base") {
                return Err(bad(format!(
                    "semantic_techer `{t}` unsupported (need a HuBERT teacher)"
                )));
            }
        }
        if let Some(m) = &raw.downsample_mode {
            if m != "step_down" {
                return Err(bad(format!(
                    "downsample_mode `{m}` unsupported (need `step_down`)"
                )));
            }
        }
        if raw.vq_scale.unwrap_or(1) != 1 {
            return Err(bad("vq_scale != 1 unsupported".into()));
        }
        // The reference resolves "bosonai/hubert_base" for the teacher config; a local
        // `hubert_base/config.json` (as in the fixtures) plays that role, else HuBERT-base defaults.
        let hubert_path = dir.join("hubert_base").join("config.json");
        let hubert = if hubert_path.exists() {
            let text = read_to_string(&hubert_path)?;
            let raw_h: RawHubertConfig =
                serde_json::from_str(&text).map_err(|e| CodecError::Config {
                    path: hubert_path.clone(),
                    msg: e.to_string(),
                })?;
            raw_h.resolve(&hubert_path)?
        } else {
            HubertConfig::default()
        };
        let cfg = Self {
            layout: CheckpointLayout::Legacy,
            // Constructor default is 16000, but every released config sets it.
            sample_rate: raw.sample_rate.unwrap_or(16000),
            semantic_sample_rate: raw.semantic_sample_rate.unwrap_or(16000),
            ratios: raw.ratios,
            n_q: Some(raw.n_q.unwrap_or(8)),
            codebook_size,
            codebook_dim: raw.codebook_dim,
            semantic_hop: hubert.hop(),
            hubert,
        };
        cfg.validate(path)
    }

    fn from_hf(value: serde_json::Value, path: &Path) -> Result<Self> {
        let bad = |msg: String| CodecError::Config {
            path: path.to_path_buf(),
            msg,
        };
        let raw: RawHfConfig =
            serde_json::from_value(value).map_err(|e| bad(format!("transformers keys: {e}")))?;
        let ratios = raw
            .acoustic_model_config
            .downsampling_ratios
            .ok_or_else(|| bad("acoustic_model_config.downsampling_ratios missing".into()))?;
        if let Some(up) = &raw.acoustic_model_config.upsampling_ratios {
            if up != &ratios {
                return Err(bad(format!(
                    "acoustic_model_config.upsampling_ratios {up:?} differ from downsampling_ratios {ratios:?}"
                )));
            }
        }
        let hubert = raw.semantic_model_config.resolve(path)?;
        let cfg = Self {
            layout: CheckpointLayout::Hf,
            sample_rate: raw.sample_rate.unwrap_or(24000),
            semantic_sample_rate: raw.semantic_sample_rate.unwrap_or(16000),
            ratios,
            n_q: None,
            codebook_size: raw.codebook_size.unwrap_or(1024),
            codebook_dim: raw.codebook_dim,
            semantic_hop: raw.downsample_factor.unwrap_or_else(|| hubert.hop()),
            hubert,
        };
        cfg.validate(path)
    }

    fn validate(self, path: &Path) -> Result<Self> {
        let bad = |msg: String| CodecError::Config {
            path: path.to_path_buf(),
            msg,
        };
        if self.ratios.is_empty() || self.ratios.contains(&0) {
            return Err(bad(format!(
                "ratios {:?} must be non-empty and positive",
                self.ratios
            )));
        }
        if self.sample_rate == 0 || self.semantic_sample_rate == 0 || self.semantic_hop == 0 {
            return Err(bad(
                "sample rates and downsample_factor must be positive".into()
            ));
        }
        if self.n_q == Some(0) {
            return Err(bad("n_q must be positive".into()));
        }
        Ok(self)
    }
}

pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CodecError::Io {
        path: PathBuf::from(path),
        source,
    })
}
