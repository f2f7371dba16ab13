//! Errors of the hub client and the downloader. Each says what went wrong, on which URL or file,
//! and what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong while talking to the hub or writing the files.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{url}: 401 Unauthorized ({detail}). The repository `{repo}` is private, gated, or does not \
         exist{token_hint}"
    )]
    Unauthorized {
        repo: String,
        url: String,
        detail: String,
        token_hint: &'static str,
    },
    #[error(
        "{url}: 403 Forbidden ({detail}). Your token has no access to `{repo}`: accept the licence on \
         the model page while logged in, or use a token with read access"
    )]
    Forbidden {
        repo: String,
        url: String,
        detail: String,
    },
    #[error(
        "repository `{repo}` not found on {endpoint} ({detail}); check the name (--model-repo / \
         --codec-repo) and HF_ENDPOINT"
    )]
    RepoNotFound {
        repo: String,
        endpoint: String,
        detail: String,
    },
    #[error("revision `{revision}` not found in `{repo}` ({detail}); check --revision (branch, tag or commit)")]
    RevisionNotFound {
        repo: String,
        revision: String,
        detail: String,
    },
    #[error("file `{file}` not found in `{repo}` at `{revision}` ({detail})")]
    EntryNotFound {
        repo: String,
        revision: String,
        file: String,
        detail: String,
    },
    #[error("{url}: HTTP {status} ({detail})")]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: connection failed: {detail}; check the network, HF_ENDPOINT and any proxy")]
    Transport { url: String, detail: String },
    #[error(
        "{url}: the transfer stopped after {got} of {expected} bytes; run the command again to \
         resume from the partial file"
    )]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url}: response has no `{header}` header; is HF_ENDPOINT a Hugging Face hub?")]
    MissingHeader { url: String, header: &'static str },
    #[error("{url}: invalid `{header}` header `{value}`")]
    InvalidHeader {
        url: String,
        header: &'static str,
        value: String,
    },
    #[error("{url}: unexpected response: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("`{repo}` has no `{file}`; {hint}")]
    MissingFile {
        repo: String,
        file: String,
        hint: String,
    },
    #[error(
        "`{repo}` has no weights: expected model.safetensors, or model.safetensors.index.json with \
         its shards, or *.safetensors files (the repository lists: {listed})"
    )]
    NoWeights { repo: String, listed: String },
    #[error("`{repo}` lists the file name `{file}`, which is not a safe relative path; refusing to write it")]
    UnsafePath { repo: String, file: String },
    #[error(
        "{path}: {algorithm} mismatch after download (expected {expected}, got {actual}); the file was \
         deleted. The server or a proxy sent wrong bytes: run again, or check HF_ENDPOINT"
    )]
    Integrity {
        path: PathBuf,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: failed after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        file: String,
        attempts: u32,
        #[source]
        last: Box<HubError>,
    },
}

impl HubError {
    /// Whether trying again (resuming) may succeed: network trouble, cut transfers, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Truncated { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::RetriesExhausted { last, .. } => last.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;
