//! Finding a complete model and audio-tokenizer directory on disk, for `serve` without `--model`.
//!
//! Looked at, in order, separately for the model and the tokenizer:
//! 1. the explicit directories the caller passes (`MODEL_PATH`, `AUDIO_TOKENIZER_PATH`);
//! 2. each volume root's `model/` and `codec/` (what `higgs-serve download --out ROOT` writes;
//!    on RunPod `/runpod-volume/higgs_audio`);
//! 3. the Hugging Face cache (`$HF_HOME/hub`): `models--{owner}--{name}/snapshots/{commit}`, the
//!    commit named by `refs/main` first, then the other snapshots, newest first.
//!
//! Nothing here reads the environment: the caller resolves the variables and passes paths.

use crate::download::part_path;
use std::fmt;
use std::path::{Path, PathBuf};

/// The official model repository.
pub const DEFAULT_MODEL_REPO: &str = "bosonai/higgs-audio-v2-generation-3B-base";
/// The official audio-tokenizer repository.
pub const DEFAULT_CODEC_REPO: &str = "bosonai/higgs-audio-v2-tokenizer";
/// The RunPod network-volume root used by the worker.
pub const RUNPOD_VOLUME_ROOT: &str = "/runpod-volume/higgs_audio";

/// Where to look.
#[derive(Debug, Clone)]
pub struct ModelSearch {
    /// Explicit model directory (`MODEL_PATH`): used if complete, else reported.
    pub model_path: Option<PathBuf>,
    /// Explicit tokenizer directory (`AUDIO_TOKENIZER_PATH`).
    pub codec_path: Option<PathBuf>,
    /// Roots holding `model/` and `codec/`.
    pub volume_roots: Vec<PathBuf>,
    /// The hub cache directory (`$HF_HOME/hub`, by default `~/.cache/huggingface/hub`).
    pub hf_cache: Option<PathBuf>,
    /// Repositories whose cache entries count as the model, in order of preference.
    pub model_repos: Vec<String>,
    /// Repositories whose cache entries count as the audio tokenizer.
    pub codec_repos: Vec<String>,
}

impl Default for ModelSearch {
    fn default() -> Self {
        Self {
            model_path: None,
            codec_path: None,
            volume_roots: vec![PathBuf::from(RUNPOD_VOLUME_ROOT)],
            hf_cache: None,
            model_repos: vec![DEFAULT_MODEL_REPO.to_string()],
            codec_repos: vec![DEFAULT_CODEC_REPO.to_string()],
        }
    }
}

/// Where each part was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDirs {
    pub model: PathBuf,
    pub codec: PathBuf,
}

/// Nothing complete was found; lists every place looked at and why it did not qualify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NotFound {
    /// `(part, place, reason)` for each candidate rejected.
    pub looked: Vec<(&'static str, PathBuf, String)>,
    pub missing_model: bool,
    pub missing_codec: bool,
    /// Suggested `--out` directory for the download command.
    pub suggested_out: PathBuf,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.missing_model, self.missing_codec) {
            (true, true) => "model and audio tokenizer",
            (true, false) => "model",
            _ => "audio tokenizer",
        };
        writeln!(f, "{what} not found. Looked in:")?;
        for (part, place, why) in &self.looked {
            writeln!(f, "  {part}: {} ({why})", place.display())?;
        }
        write!(
            f,
            "run: higgs-serve download --out {}   (or pass --model DIR --codec DIR)",
            self.suggested_out.display()
        )
    }
}

/// Finds a complete model directory and a complete tokenizer directory.
pub fn find_model_dirs(search: &ModelSearch) -> Result<ModelDirs, NotFound> {
    let mut looked = Vec::new();
    let model = find_one(
        "model",
        search.model_path.as_deref(),
        &search.volume_roots,
        "model",
        search.hf_cache.as_deref(),
        &search.model_repos,
        model_complete,
        &mut looked,
    );
    let codec = find_one(
        "codec",
        search.codec_path.as_deref(),
        &search.volume_roots,
        "codec",
        search.hf_cache.as_deref(),
        &search.codec_repos,
        codec_complete,
        &mut looked,
    );
    match (model, codec) {
        (Some(model), Some(codec)) => Ok(ModelDirs { model, codec }),
        (m, c) => Err(NotFound {
            looked,
            missing_model: m.is_none(),
            missing_codec: c.is_none(),
            suggested_out: search
                .volume_roots
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from(RUNPOD_VOLUME_ROOT)),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn find_one(
    part: &'static str,
    explicit: Option<&Path>,
    roots: &[PathBuf],
    sub: &str,
    hf_cache: Option<&Path>,
    repos: &[String],
    complete: fn(&Path) -> Result<(), String>,
    looked: &mut Vec<(&'static str, PathBuf, String)>,
) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(explicit.map(Path::to_path_buf));
    candidates.extend(roots.iter().map(|r| r.join(sub)));
    if let Some(cache) = hf_cache {
        for repo in repos {
            candidates.extend(cache_snapshots(cache, repo, looked, part));
        }
    }
    for c in candidates {
        match complete(&c) {
            Ok(()) => return Some(c),
            Err(why) => looked.push((part, c, why)),
        }
    }
    None
}

/// Snapshot directories of `repo` in the cache: `refs/main`'s commit first, then newest first.
fn cache_snapshots(
    cache: &Path,
    repo: &str,
    looked: &mut Vec<(&'static str, PathBuf, String)>,
    part: &'static str,
) -> Vec<PathBuf> {
    let base = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snaps = base.join("snapshots");
    let Ok(entries) = std::fs::read_dir(&snaps) else {
        looked.push((part, snaps, "no such directory".into()));
        return Vec::new();
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let main = std::fs::read_to_string(base.join("refs").join("main"))
        .ok()
        .map(|s| s.trim().to_string());
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(m) = main {
        if let Some(i) = dirs.iter().position(|(_, p)| p.ends_with(&m)) {
            out.push(dirs.remove(i).1);
        }
    }
    out.extend(dirs.into_iter().map(|(_, p)| p));
    out
}

fn check_files(dir: &Path, files: &[&str]) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("no such directory".into());
    }
    for f in files {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(if part_path(&p).exists() {
                format!("{f} is only partly downloaded; run the download again to resume it")
            } else {
                format!("no {f}")
            });
        }
    }
    Ok(())
}

/// A model directory is complete with `config.json`, `tokenizer.json` and its weights.
pub fn model_complete(dir: &Path) -> Result<(), String> {
    check_files(dir, &["config.json", "tokenizer.json"])?;
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text =
            std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
        let shards: Vec<&str> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        if shards.is_empty() {
            return Err("model.safetensors.index.json has no weight_map".into());
        }
        return check_files(dir, &shards);
    }
    if dir.join("model.safetensors").is_file() {
        return Ok(());
    }
    let any = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"));
    if any {
        Ok(())
    } else {
        check_files(dir, &["model.safetensors"])
    }
}

/// A tokenizer directory is complete with `config.json` and `model.pth` or `model.safetensors`.
pub fn codec_complete(dir: &Path) -> Result<(), String> {
    check_files(dir, &["config.json"])?;
    if dir.join("model.pth").is_file() || dir.join("model.safetensors").is_file() {
        Ok(())
    } else {
        check_files(dir, &["model.pth"]).map_err(|e| format!("{e} (nor model.safetensors)"))
    }
}
