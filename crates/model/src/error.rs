//! Errors of the model crate. Load errors name the file, the tensor and the expected/actual shape.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model config{}: {message}", path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Config {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("no weights found in {dir}: expected model.safetensors, or model.safetensors.index.json with its shards, or *.safetensors files")]
    NoWeights { dir: PathBuf },
    #[error("cannot parse safetensors file {path}: {message} (the file is corrupt or truncated; re-download it)")]
    CorruptWeights { path: PathBuf, message: String },
    #[error("bad shard index {path}: {message}")]
    BadIndex { path: PathBuf, message: String },
    #[error("tensor `{name}` is missing from the checkpoint in {dir} (looked for: {tried})")]
    MissingTensor {
        name: String,
        dir: PathBuf,
        tried: String,
    },
    #[error("tensor `{name}` in {file} has shape {actual:?}, expected {expected:?} (does config.json match the weights?)")]
    ShapeMismatch {
        name: String,
        file: PathBuf,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("tensor `{name}` in {file} has unsupported dtype {dtype} (expected a float type)")]
    BadDtype {
        name: String,
        file: PathBuf,
        dtype: String,
    },
    #[error("loading tensor `{name}` from {file}: {source}")]
    Tensor {
        name: String,
        file: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

impl LoadError {
    pub(crate) fn config(message: String) -> Self {
        Self::Config {
            path: None,
            message,
        }
    }

    pub(crate) fn with_path(self, p: &std::path::Path) -> Self {
        match self {
            Self::Config { message, .. } => Self::Config {
                path: Some(p.to_path_buf()),
                message,
            },
            other => other,
        }
    }
}

/// Errors of the forward pass: invalid inputs from the caller or a tensor backend failure.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("invalid model input: {0}")]
    Input(String),
    #[error("KV cache: {0}")]
    Cache(String),
    /// Text logits were asked of a checkpoint saved without `text_lm_head` (transformers'
    /// `HiggsAudioV2ForConditionalGeneration` has none unless built with `use_text_head=True`).
    #[error("text logits requested, but this checkpoint has no text head (no `text_lm_head.weight`): only audio logits can be computed")]
    NoTextHead,
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
