//! Downloading files and whole checkpoints into a plain directory.
//!
//! Why not `hf_hub::api::sync::ApiRepo::download`: hf-hub 0.4 writes only into its own cache
//! layout (`blobs/` + `snapshots/` symlinks) rather than a chosen directory such as
//! `/runpod-volume/higgs_audio/model`, never verifies the bytes against the ETag, and appends
//! whatever a resumed request returns even when the server ignored the `Range` header (a 200
//! with the whole file), which corrupts the file. This module speaks the same protocol
//! (see [`crate::client`]) with the same HTTP client (ureq 2) and adds those three things.
//!
//! For each file: the hub is asked for its size and ETag; a complete file already on disk is
//! checked (size + sha256 / git blob id) and kept, or deleted and fetched again when it fails; the
//! bytes go to `{name}.part`, which a later run continues with `Range: bytes={len}-`; the finished
//! `.part` is checked, synced and renamed onto `{name}` (atomic on one filesystem). A file that
//! fails its check is deleted and downloaded again, up to `retries` times, then reported.

use crate::client::{FileMeta, HubClient, RepoInfo};
use crate::error::{HubError, Result};
use crate::integrity::check_file;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Receives progress; every method has a no-op default.
pub trait Progress {
    /// A file transfer starts: `total` bytes, of which `done` are already on disk (resume).
    fn start(&mut self, _file: &str, _total: u64, _done: u64) {}
    /// `n` more bytes were written.
    fn advance(&mut self, _n: u64) {}
    /// The file is complete (downloaded, resumed or already there).
    fn finish(&mut self, _file: &str, _outcome: &Outcome) {}
    /// Something was wrong but is being handled (corrupt file, retry).
    fn warn(&mut self, _message: &str) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Knobs of the downloader.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// How many times a file is tried again after a transient failure or a failed check.
    pub retries: u32,
    /// First wait before a retry; doubled each time, at most 30 s.
    pub backoff: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            retries: 5,
            backoff: Duration::from_secs(1),
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already on disk and passed its check.
    AlreadyComplete,
    /// Downloaded from the start.
    Downloaded,
    /// Continued from a partial file of `from` bytes.
    Resumed { from: u64 },
    /// A file on disk failed its check (`reason`) and was downloaded again.
    Replaced { reason: String },
}

/// One file of a [`RepoReport`].
#[derive(Debug, Clone)]
pub struct FileReport {
    pub file: String,
    pub path: PathBuf,
    pub size: u64,
    pub etag: String,
    pub outcome: Outcome,
}

/// What [`HubClient::download_repo`] did.
#[derive(Debug, Clone)]
pub struct RepoReport {
    pub repo: String,
    pub revision: String,
    /// The commit every file was fetched at.
    pub commit: String,
    pub dir: PathBuf,
    pub files: Vec<FileReport>,
}

/// Which files of a repository are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// The LLM: configs, text tokenizer, weights (single file, index + shards, or `*.safetensors`).
    Model,
    /// The audio tokenizer: `config.json` and the weights its layout names (`model.pth` for the
    /// legacy layout, `model.safetensors` for the transformers one), plus `hubert_base/config.json`.
    Codec,
}

/// Optional small files of the model repository, fetched when listed.
pub const MODEL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Optional small files of the audio-tokenizer repository, fetched when listed.
pub const CODEC_FILES: &[&str] = &["hubert_base/config.json", "preprocessor_config.json"];

/// Name of the record written next to the files after a complete download.
pub const MANIFEST: &str = ".higgs-download.json";

/// Lock file held (advisory `flock`) while a process downloads into a directory.
pub const LOCK: &str = ".higgs-download.lock";

impl HubClient {
    /// Downloads what `kind` needs from `repo` at `revision` into `dir` (created), pinned to the
    /// commit the revision points to. Files already complete are kept.
    pub fn download_repo(
        &self,
        repo: &str,
        revision: &str,
        kind: RepoKind,
        dir: &Path,
        opts: &DownloadOptions,
        progress: &mut dyn Progress,
    ) -> Result<RepoReport> {
        let info = self.repo_info(repo, revision)?;
        let commit = info.sha.clone().unwrap_or_else(|| revision.to_string());
        std::fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
        let _lock = lock_dir(dir, progress)?;
        let mut files = Vec::new();
        let mut get = |file: &str, files: &mut Vec<FileReport>| -> Result<PathBuf> {
            let path = local_path(dir, repo, file)?;
            let r = self.download_file(repo, &commit, file, &path, opts, progress)?;
            files.push(r);
            Ok(path)
        };
        let require = |file: &str, hint: &str| -> Result<()> {
            if info.has(file) {
                Ok(())
            } else {
                Err(HubError::MissingFile {
                    repo: repo.to_string(),
                    file: file.to_string(),
                    hint: hint.to_string(),
                })
            }
        };
        require(
            "config.json",
            "is this a Higgs Audio repository? (--model-repo / --codec-repo)",
        )?;
        get("config.json", &mut files)?;
        match kind {
            RepoKind::Model => {
                for f in MODEL_FILES.iter().filter(|f| info.has(f)) {
                    get(f, &mut files)?;
                }
                for f in model_weight_files(repo, &info, &mut |f| get(f, &mut files))? {
                    get(&f, &mut files)?;
                }
            }
            RepoKind::Codec => {
                for f in CODEC_FILES.iter().filter(|f| info.has(f)) {
                    get(f, &mut files)?;
                }
                let cfg_path = local_path(dir, repo, "config.json")?;
                let weights = codec_weight_file(repo, &info, &cfg_path)?;
                get(weights, &mut files)?;
            }
        }
        let report = RepoReport {
            repo: repo.to_string(),
            revision: revision.to_string(),
            commit,
            dir: dir.to_path_buf(),
            files,
        };
        write_manifest(&report)?;
        Ok(report)
    }

    /// Downloads one file to `dest`, resuming `{dest}.part` and checking the result.
    pub fn download_file(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        dest: &Path,
        opts: &DownloadOptions,
        progress: &mut dyn Progress,
    ) -> Result<FileReport> {
        let mut meta = self.file_metadata(repo, revision, file)?;
        let report = |meta: &FileMeta, outcome: Outcome| FileReport {
            file: file.to_string(),
            path: dest.to_path_buf(),
            size: meta.size,
            etag: meta.etag.clone(),
            outcome,
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        let mut replaced = None;
        if dest.is_file() {
            match check_file(dest, &meta.expected)? {
                None => {
                    let r = report(&meta, Outcome::AlreadyComplete);
                    progress.finish(file, &r.outcome);
                    return Ok(r);
                }
                Some(m) => {
                    progress.warn(&format!(
                        "{}: existing file fails its check ({m}); deleting it and downloading again",
                        dest.display()
                    ));
                    std::fs::remove_file(dest).map_err(|e| HubError::io(dest, e))?;
                    replaced = Some(m.to_string());
                }
            }
        }
        let part = part_path(dest);
        let mut resumed_from = None;
        let mut attempt = 0u32;
        loop {
            let result = self
                .fetch_part(&meta, &part, file, progress)
                .and_then(|from| {
                    if from > 0 && resumed_from.is_none() {
                        resumed_from = Some(from);
                    }
                    check_file(&part, &meta.expected)
                });
            let err = match result {
                Ok(None) => break,
                Ok(Some(m)) => {
                    // The bytes are wrong: drop them all, a resume would keep the bad part.
                    let _ = std::fs::remove_file(&part);
                    resumed_from = None;
                    HubError::Integrity {
                        path: dest.to_path_buf(),
                        algorithm: m.algorithm,
                        expected: m.expected,
                        actual: m.actual,
                    }
                }
                Err(e) => e,
            };
            let retryable = err.is_transient() || matches!(err, HubError::Integrity { .. });
            if !retryable || attempt >= opts.retries {
                return Err(HubError::RetriesExhausted {
                    file: file.to_string(),
                    attempts: attempt + 1,
                    last: Box::new(err),
                });
            }
            attempt += 1;
            progress.warn(&format!("{file}: {err}; retry {attempt}/{}", opts.retries));
            std::thread::sleep(backoff(opts.backoff, attempt));
            // CDN URLs are presigned and expire: resolve again.
            meta = self.file_metadata(repo, revision, file)?;
        }
        let f = std::fs::File::open(&part).map_err(|e| HubError::io(&part, e))?;
        f.sync_all().map_err(|e| HubError::io(&part, e))?;
        drop(f);
        std::fs::rename(&part, dest).map_err(|e| HubError::io(dest, e))?;
        let outcome = match (replaced, resumed_from) {
            (Some(reason), _) => Outcome::Replaced { reason },
            (None, Some(from)) => Outcome::Resumed { from },
            (None, None) => Outcome::Downloaded,
        };
        let r = report(&meta, outcome);
        progress.finish(file, &r.outcome);
        Ok(r)
    }

    /// Brings `part` to `meta.size` bytes; returns the length it started from.
    fn fetch_part(
        &self,
        meta: &FileMeta,
        part: &Path,
        file: &str,
        progress: &mut dyn Progress,
    ) -> Result<u64> {
        let mut start = match std::fs::metadata(part) {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        if start > meta.size {
            progress.warn(&format!(
                "{}: partial file is larger than the file on the hub; starting over",
                part.display()
            ));
            std::fs::remove_file(part).map_err(|e| HubError::io(part, e))?;
            start = 0;
        }
        progress.start(file, meta.size, start);
        if start == meta.size {
            return Ok(start);
        }
        let url = &meta.download_url;
        let resp = self.get_from(meta, start)?;
        let mut out = match resp.status() {
            206 if start > 0 => {
                let cr = resp.header("content-range").unwrap_or("").to_string();
                let first = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if first != Some(start) {
                    return Err(HubError::InvalidHeader {
                        url: url.clone(),
                        header: "Content-Range",
                        value: format!("{cr} (asked for bytes={start}-)"),
                    });
                }
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(part)
                    .map_err(|e| HubError::io(part, e))?
            }
            200 | 206 => {
                if start > 0 {
                    progress.warn(&format!(
                        "{url}: the server ignored the Range request; downloading {file} from the start"
                    ));
                    start = 0;
                    progress.start(file, meta.size, 0);
                }
                std::fs::File::create(part).map_err(|e| HubError::io(part, e))?
            }
            s => {
                return Err(HubError::BadResponse {
                    url: url.clone(),
                    reason: format!("status {s} for a download"),
                })
            }
        };
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut have = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.flush().map_err(|e| HubError::io(part, e))?;
                    return Err(HubError::Transport {
                        url: url.clone(),
                        detail: format!("after {have} of {} bytes: {e}", meta.size),
                    });
                }
            };
            out.write_all(&buf[..n])
                .map_err(|e| HubError::io(part, e))?;
            have += n as u64;
            progress.advance(n as u64);
            if have > meta.size {
                break;
            }
        }
        out.flush().map_err(|e| HubError::io(part, e))?;
        if have < meta.size {
            return Err(HubError::Truncated {
                url: url.clone(),
                got: have,
                expected: meta.size,
            });
        }
        Ok(start)
    }
}

/// The weight files of a model repository. `fetch` downloads a file and returns its local path
/// (used for the shard index).
fn model_weight_files(
    repo: &str,
    info: &RepoInfo,
    fetch: &mut dyn FnMut(&str) -> Result<PathBuf>,
) -> Result<Vec<String>> {
    const INDEX: &str = "model.safetensors.index.json";
    if info.has(INDEX) {
        let path = fetch(INDEX)?;
        let text = std::fs::read_to_string(&path).map_err(|e| HubError::io(&path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| HubError::Json {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| HubError::Json {
                path: path.clone(),
                message: "no `weight_map` object".into(),
            })?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        shards.sort();
        shards.dedup();
        for s in &shards {
            if !info.has(s) {
                return Err(HubError::MissingFile {
                    repo: repo.to_string(),
                    file: s.clone(),
                    hint: format!("{INDEX} names it but the repository does not list it"),
                });
            }
        }
        return Ok(shards);
    }
    if info.has("model.safetensors") {
        return Ok(vec!["model.safetensors".into()]);
    }
    let all: Vec<String> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.clone())
        .filter(|f| f.ends_with(".safetensors") && !f.contains('/'))
        .collect();
    if all.is_empty() {
        return Err(HubError::NoWeights {
            repo: repo.to_string(),
            listed: info
                .siblings
                .iter()
                .map(|s| s.rfilename.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(all)
}

/// `model.safetensors` for a transformers-layout tokenizer config, `model.pth` for the legacy one;
/// whichever exists when the config does not decide.
fn codec_weight_file(repo: &str, info: &RepoInfo, config: &Path) -> Result<&'static str> {
    let text = std::fs::read_to_string(config).map_err(|e| HubError::io(config, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| HubError::Json {
        path: config.to_path_buf(),
        message: e.to_string(),
    })?;
    let hf_layout =
        v.get("model_type").and_then(|t| t.as_str()) == Some("higgs_audio_v2_tokenizer");
    let order: [&'static str; 2] = if hf_layout {
        ["model.safetensors", "model.pth"]
    } else {
        ["model.pth", "model.safetensors"]
    };
    order
        .into_iter()
        .find(|f| info.has(f))
        .ok_or_else(|| HubError::MissingFile {
            repo: repo.to_string(),
            file: order[0].to_string(),
            hint: "an audio tokenizer repository holds model.pth (legacy) or model.safetensors"
                .into(),
        })
}

/// `dir/file`, refusing names that would leave `dir`.
fn local_path(dir: &Path, repo: &str, file: &str) -> Result<PathBuf> {
    let rel = Path::new(file);
    let safe = !file.is_empty()
        && !file.contains('\\')
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !safe {
        return Err(HubError::UnsafePath {
            repo: repo.to_string(),
            file: file.to_string(),
        });
    }
    Ok(dir.join(rel))
}

/// Takes the directory's download lock, waiting (with a message) while another process holds it.
/// Whatever that process finished is then verified and kept.
fn lock_dir(dir: &Path, progress: &mut dyn Progress) -> Result<std::fs::File> {
    use fs2::FileExt;
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| HubError::io(&path, e))?;
    if f.try_lock_exclusive().is_err() {
        progress.warn(&format!(
            "another process is downloading into {}; waiting for it to finish",
            dir.display()
        ));
        f.lock_exclusive().map_err(|e| HubError::io(&path, e))?;
    }
    Ok(f)
}

/// `{dest}.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(5);
    (base * factor).min(Duration::from_secs(30))
}

fn write_manifest(r: &RepoReport) -> Result<()> {
    let files: serde_json::Map<String, serde_json::Value> = r
        .files
        .iter()
        .map(|f| {
            (
                f.file.clone(),
                serde_json::json!({"size": f.size, "etag": f.etag}),
            )
        })
        .collect();
    let v = serde_json::json!({
        "repo": r.repo, "revision": r.revision, "commit": r.commit, "files": files,
    });
    let path = r.dir.join(MANIFEST);
    let tmp = part_path(&path);
    let text = serde_json::to_string_pretty(&v).map_err(|e| HubError::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, text).map_err(|e| HubError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| HubError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        let d = Path::new("/tmp/x");
        assert!(local_path(d, "r", "../etc/passwd").is_err());
        assert!(local_path(d, "r", "/etc/passwd").is_err());
        assert!(local_path(d, "r", "a/./b").is_ok());
        assert!(local_path(d, "r", "hubert_base/config.json").is_ok());
        assert!(local_path(d, "r", "").is_err());
    }
}
