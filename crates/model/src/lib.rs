//! Higgs Audio v2 generation model (Llama-3.2 backbone + DualFFN audio adapter) on candle.
//!
//! - [`HiggsConfig`]: `config.json` in the legacy (`higgs_audio`) and transformers
//!   (`higgs_audio_v2`) layouts.
//! - [`WeightFiles`]: memory-mapped safetensors (single file or sharded), legacy / `model.`-prefixed
//!   / transformers names, split frozen+trainable tensors.
//! - [`HiggsAudioModel`]: the packed, batched forward pass over a slot-based [`KvCache`], built from
//!   modules that each load their own weights: `decoder_layer` (the DualFFN layer, one path for
//!   the eager forward and the decode step), `attention` (the attention maths, once), `layers`
//!   (RMSNorm, MLP, RoPE); `batch` packs a forward's sequences, `decode_step` is the fixed-shape
//!   audio decode step that [`decode_graph`] replays as CUDA graphs. CUDA kernels live in
//!   `higgs-kernels`.
//! - [`ModelOptions`]: switches for the alternative code paths, fixed at load time.
//! - [`random`]: random checkpoints in the real on-disk layouts (tests, demos, benchmarks).

#![recursion_limit = "256"]
// Load errors carry the file, tensor and both shapes; they happen once at start-up, so their size
// is irrelevant next to being explicit.
#![allow(clippy::result_large_err)]

mod attention;
mod batch;
pub mod config;
pub mod decode_graph;
mod decode_step;
mod decoder_layer;
pub mod error;
pub mod kv_cache;
pub mod layers;
pub mod modeling_higgs_audio;
pub mod options;
pub mod random;
pub mod weights;

pub use config::{CheckpointLayout, HiggsConfig};
pub use decode_graph::GraphStats;
pub use error::{ForwardError, LoadError};
pub use kv_cache::KvCache;
pub use modeling_higgs_audio::{
    ForwardOptions, ForwardOutput, HiggsAudioModel, LogitsRequest, PositionKind, SeqInput,
};
pub use options::ModelOptions;
pub use weights::WeightFiles;
