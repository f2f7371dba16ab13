//! Error type of the crate (no reference counterpart: the Python code raises on `assert`/`KeyError`).

use std::path::PathBuf;

/// Everything that can go wrong while loading a checkpoint, running the codec or reading a codes
/// file. Variants name the file, tensor or field involved.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("unsupported audio-tokenizer checkpoint in {path}: {msg}")]
    UnknownLayout { path: PathBuf, msg: String },
    #[error("tensor `{name}` not found in {path}")]
    MissingTensor { name: String, path: PathBuf },
    #[error("tensor `{name}` in {path} has shape {actual:?}, expected {expected}")]
    TensorShape {
        name: String,
        path: PathBuf,
        expected: String,
        actual: Vec<usize>,
    },
    #[error("cannot read checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("codes file: {0}")]
    CodesFile(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, CodecError>;
