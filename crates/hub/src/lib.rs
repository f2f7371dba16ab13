//! `higgs-hub`: gets the Higgs Audio v2 checkpoints onto disk and finds them again.
//!
//! * [`HubClient::download_repo`] fetches what the model repository
//!   (`bosonai/higgs-audio-v2-generation-3B-base`: configs, text tokenizer, weights or index and
//!   shards) or the audio-tokenizer repository (`bosonai/higgs-audio-v2-tokenizer`: `config.json`
//!   and `model.pth` or `model.safetensors`) needs into a plain directory, e.g.
//!   `/runpod-volume/higgs_audio/{model,codec}`. It speaks the hub's HTTP protocol (works with
//!   any `HF_ENDPOINT` mirror), resumes `.part` files with `Range` requests, verifies every file
//!   against the hub's ETag (sha256 for LFS files, git blob id otherwise) and renames complete
//!   files into place atomically. See [`download`] for why this is not `hf_hub::ApiRepo::download`.
//! * [`find_model_dirs`] looks for complete directories in explicit paths, volume roots and the
//!   Hugging Face cache, for `serve` without `--model`.
//!
//! Nothing in this crate reads environment variables; the CLI turns `HF_ENDPOINT`, `HF_TOKEN`,
//! `HF_HOME`, `MODEL_PATH` and `AUDIO_TOKENIZER_PATH` into the configs here.

pub mod client;
pub mod download;
pub mod error;
pub mod integrity;
pub mod resolve;

pub use client::{FileMeta, HubClient, HubConfig, RepoInfo, Sibling, DEFAULT_ENDPOINT};
pub use download::{
    DownloadOptions, FileReport, NoProgress, Outcome, Progress, RepoKind, RepoReport,
};
pub use error::{HubError, Result};
pub use integrity::{Expected, ExpectedDigest};
pub use resolve::{
    find_model_dirs, ModelDirs, ModelSearch, NotFound, DEFAULT_CODEC_REPO, DEFAULT_MODEL_REPO,
    RUNPOD_VOLUME_ROOT,
};
