//! The CUDA kernels of the model and the codec (`src/cuda/*.cu`, PTX prebuilt with nvcc 13.0 for
//! `compute_80` and embedded) as candle custom ops, with the scaffolding they share (`op.rs`).
//!
//! Everything is CUDA-only: without the `cuda` feature the crate is empty, and the ops refuse CPU
//! tensors. Callers decide whether to use a kernel (device, dtype, their own options).
//!
//! | kernel | used by |
//! | --- | --- |
//! | [`swiglu`] | the model's MLP (one gate\|up GEMM + this) |
//! | [`decode_qkv`], [`decode_softmax`], [`add_rmsnorm`] | the model's graphed decode step |
//! | [`kv_write_rows`] | the model's K/V cache writes of prefill pieces |
//! | [`snake`] | the codec's `Snake1d` |
//! | [`conv_cols`] | the codec's stride-1 convolutions (columns for one GEMM, Snake and bias folded in) |
//! | [`sample_rows`] | the engine's sampler: temperature/top-k/top-p/draw of audio rows in one launch |

#[cfg(feature = "cuda")]
mod conv_cols;
#[cfg(feature = "cuda")]
mod decode;
#[cfg(feature = "cuda")]
mod op;
#[cfg(feature = "cuda")]
mod sample;
#[cfg(feature = "cuda")]
mod snake;
#[cfg(feature = "cuda")]
mod swiglu;

#[cfg(feature = "cuda")]
pub use conv_cols::{conv_cols, ConvCols};
#[cfg(feature = "cuda")]
pub use decode::{add_rmsnorm, decode_qkv, decode_softmax, kv_write_rows};
#[cfg(feature = "cuda")]
pub use sample::{sample_rows, SAMPLE_MAX_COLS};
#[cfg(feature = "cuda")]
pub use snake::snake;
#[cfg(feature = "cuda")]
pub use swiglu::swiglu;
