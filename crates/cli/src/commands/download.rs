//! `higgs-serve download`: fetches the model and audio-tokenizer repositories into `OUT/model` and
//! `OUT/codec` (e.g. the RunPod network volume `/runpod-volume/higgs_audio`), resuming partial
//! files and verifying every file against the hub's ETag. The environment (`HF_ENDPOINT`,
//! `HF_TOKEN`, `HF_HOME`, proxies, `MODEL_PATH`, `AUDIO_TOKENIZER_PATH`) is read here and only here;
//! `higgs-hub` gets plain values. See docs/download.md.

use anyhow::{Context, Result};
use clap::Args;
use higgs_hub::{
    DownloadOptions, HubClient, HubConfig, ModelSearch, Outcome, Progress, RepoKind, RepoReport,
    DEFAULT_CODEC_REPO, DEFAULT_ENDPOINT, DEFAULT_MODEL_REPO, RUNPOD_VOLUME_ROOT,
};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct DownloadArgs {
    /// Directory to fill: the model goes to OUT/model, the audio tokenizer to OUT/codec.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Hugging Face repository of the LLM.
    #[arg(long, default_value = DEFAULT_MODEL_REPO)]
    pub model_repo: String,
    /// Hugging Face repository of the audio tokenizer.
    #[arg(long, default_value = DEFAULT_CODEC_REPO)]
    pub codec_repo: String,
    /// Branch, tag or commit of the model repository.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Branch, tag or commit of the audio-tokenizer repository.
    #[arg(long, default_value = "main")]
    pub codec_revision: String,
    /// Access token for gated or private repositories (default: HF_TOKEN, then $HF_HOME/token).
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Hub URL, or a mirror's.
    #[arg(long, env = "HF_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Tries per file after a network failure or a failed integrity check.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Fetch only the model repository.
    #[arg(long, conflicts_with = "codec_only")]
    pub model_only: bool,
    /// Fetch only the audio-tokenizer repository.
    #[arg(long)]
    pub codec_only: bool,
    /// No progress bars (log lines only).
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: DownloadArgs) -> Result<()> {
    let token = a
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(token_from_env_or_file);
    let client = HubClient::new(HubConfig {
        endpoint: a.endpoint.clone(),
        token,
        proxy: proxy_from_env(),
        ..HubConfig::default()
    })?;
    let opts = DownloadOptions {
        retries: a.retries,
        ..DownloadOptions::default()
    };
    let mut jobs = Vec::new();
    if !a.codec_only {
        jobs.push((
            &a.model_repo,
            &a.revision,
            RepoKind::Model,
            a.out.join("model"),
        ));
    }
    if !a.model_only {
        jobs.push((
            &a.codec_repo,
            &a.codec_revision,
            RepoKind::Codec,
            a.out.join("codec"),
        ));
    }
    for (repo, rev, kind, dir) in jobs {
        tracing::info!("{repo}@{rev} -> {}", dir.display());
        let mut progress = Bars::new(a.quiet);
        let report = client
            .download_repo(repo, rev, kind, &dir, &opts, &mut progress)
            .with_context(|| format!("downloading {repo}@{rev} into {}", dir.display()))?;
        summarize(&report);
    }
    eprintln!(
        "done. serve with: higgs-serve serve --model {} --codec {}",
        a.out.join("model").display(),
        a.out.join("codec").display()
    );
    Ok(())
}

fn summarize(r: &RepoReport) {
    let total: u64 = r.files.iter().map(|f| f.size).sum();
    let kept = r
        .files
        .iter()
        .filter(|f| f.outcome == Outcome::AlreadyComplete)
        .count();
    eprintln!(
        "{}@{} (commit {}): {} files, {:.1} MB, {} already complete, in {}",
        r.repo,
        r.revision,
        r.commit,
        r.files.len(),
        total as f64 / 1e6,
        kept,
        r.dir.display()
    );
}

/// `HUGGING_FACE_HUB_TOKEN` (older name), then the token file `huggingface-cli login` writes.
fn token_from_env_or_file() -> Option<String> {
    if let Ok(t) = std::env::var("HUGGING_FACE_HUB_TOKEN") {
        if !t.trim().is_empty() {
            return Some(t.trim().to_string());
        }
    }
    let path = std::env::var_os("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .or_else(|| hf_home().map(|h| h.join("token")))?;
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn proxy_from_env() -> Option<String> {
    ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(h));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("huggingface"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("huggingface"))
}

/// Where `serve` without `--model` looks, from the environment: `MODEL_PATH`,
/// `AUDIO_TOKENIZER_PATH`, the RunPod volume (`/runpod-volume/higgs_audio`) and the Hugging Face
/// cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`). Pass to [`higgs_hub::find_model_dirs`].
pub fn model_search_from_env() -> ModelSearch {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    ModelSearch {
        model_path: var("MODEL_PATH"),
        codec_path: var("AUDIO_TOKENIZER_PATH"),
        volume_roots: vec![PathBuf::from(RUNPOD_VOLUME_ROOT)],
        hf_cache: var("HF_HUB_CACHE").or_else(|| hf_home().map(|h| h.join("hub"))),
        ..ModelSearch::default()
    }
}

/// One indicatif bar per file (bytes, rate, ETA) on a terminal; elsewhere (logs, CI, containers)
/// a plain line every [`PLAIN_EVERY`] with bytes, percentage and rate, which a bar cannot give a
/// log file. Warnings go through the bar.
struct Bars {
    quiet: bool,
    tty: bool,
    bar: Option<indicatif::ProgressBar>,
    file: Option<FileProgress>,
}

/// What the plain lines and the summary of one file need.
struct FileProgress {
    name: String,
    total: u64,
    from: u64,
    done: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

impl FileProgress {
    /// MiB/s over what this run fetched (a resumed part's earlier bytes excluded).
    fn rate(&self) -> f64 {
        mib(self.done.saturating_sub(self.from)) / self.started.elapsed().as_secs_f64().max(1e-3)
    }
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            bar: None,
            file: None,
        }
    }
}

impl Progress for Bars {
    fn start(&mut self, file: &str, total: u64, done: u64) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let now = std::time::Instant::now();
        self.file = Some(FileProgress {
            name: file.to_string(),
            total,
            from: done,
            done,
            started: now,
            last_line: now,
        });
        if self.quiet {
            return;
        }
        if !self.tty {
            tracing::info!("{file}: fetching {:.1} MiB (from byte {done})", mib(total));
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:32!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(file.to_string());
        bar.set_position(done);
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
    }

    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        let (quiet, tty) = (self.quiet, self.tty);
        if let Some(f) = &mut self.file {
            f.done += n;
            if !quiet && !tty && f.last_line.elapsed() >= PLAIN_EVERY {
                f.last_line = std::time::Instant::now();
                tracing::info!(
                    "{}: {:.1}/{:.1} MiB ({:.0} %), {:.1} MiB/s",
                    f.name,
                    mib(f.done),
                    mib(f.total),
                    100.0 * f.done as f64 / f.total.max(1) as f64,
                    f.rate()
                );
            }
        }
    }

    fn finish(&mut self, file: &str, outcome: &Outcome) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let fetched = self
            .file
            .take()
            .filter(|f| f.name == file && f.done > f.from)
            .map(|f| {
                format!(
                    "; {:.1} MiB in {:.1} s, {:.1} MiB/s",
                    mib(f.done - f.from),
                    f.started.elapsed().as_secs_f64(),
                    f.rate()
                )
            })
            .unwrap_or_default();
        let what = match outcome {
            Outcome::AlreadyComplete => "already complete (verified)".to_string(),
            Outcome::Downloaded => "downloaded (verified)".to_string(),
            Outcome::Resumed { from } => format!("resumed from byte {from} (verified)"),
            Outcome::Replaced { reason } => format!("replaced a corrupt copy ({reason})"),
        };
        tracing::info!("{file}: {what}{fetched}");
    }

    fn warn(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| tracing::warn!("{message}")),
            None => tracing::warn!("{message}"),
        }
    }
}
