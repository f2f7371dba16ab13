//! `--demo`: the whole stack on a tiny random checkpoint. The checkpoint is deterministic (fixed
//! seeds), so it is generated once per version into the user's cache and reused by every later
//! start; nothing is left in the temporary directory, also when start-up fails.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `max_new_tokens` of a demo request that gives none: random weights rarely end by EOS, and
/// ~3 s of noise answers in about a second on a CPU.
pub const DEMO_MAX_NEW_TOKENS: usize = 75;

/// Where the demo checkpoint lives: `$XDG_CACHE_HOME` or `~/.cache`, else the temp directory.
fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("higgs-serve")
}

/// `(model, codec)` of the demo checkpoint, generating it on first use.
pub fn checkpoint() -> Result<(PathBuf, PathBuf)> {
    // The version keys the folder: a release that changes the random formats makes a new one.
    let dir = cache_root().join(format!("demo-{}", env!("CARGO_PKG_VERSION")));
    if !is_complete(&dir) {
        generate_into(&dir)
            .with_context(|| format!("writing the demo checkpoint into {}", dir.display()))?;
    }
    banner(&dir);
    Ok((dir.join("model"), dir.join("codec")))
}

fn is_complete(dir: &Path) -> bool {
    dir.join("model/config.json").is_file()
        && dir.join("model/tokenizer.json").is_file()
        && dir.join("codec/config.json").is_file()
}

/// Writes into a sibling temporary folder and renames it into place, so a start that is cut off
/// leaves no half checkpoint and two starts at once do not mix their files.
fn generate_into(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".demo-")
        .tempdir_in(parent)?;
    let ck = higgs_model::random::RandomCheckpoint::new(
        higgs_model::random::Preset::Tiny,
        higgs_model::CheckpointLayout::Legacy,
    );
    ck.write(&tmp.path().join("model"))?;
    higgs_model::random::write_tokenizer(&tmp.path().join("model"), None)?;
    higgs_codec::write_random_checkpoint(
        &tmp.path().join("codec"),
        higgs_codec::Preset::Tiny,
        higgs_codec::CheckpointLayout::Legacy,
        0,
    )?;
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another start won the race: its checkpoint is the same one.
        if !is_complete(dir) {
            return Err(e.into());
        }
    }
    Ok(())
}

/// The bundled voices (`./voices`, the repository's and the image's `/app/voices`) when the user
/// named none.
pub fn bundled_voices() -> Option<PathBuf> {
    let d = PathBuf::from("voices");
    let has_voice = std::fs::read_dir(&d).ok()?.flatten().any(|e| {
        e.path()
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("wav"))
    });
    has_voice.then_some(d)
}

fn banner(dir: &Path) {
    let line = "=".repeat(78);
    eprintln!("{line}");
    eprintln!(
        " DEMO MODE: a tiny RANDOM checkpoint (cached in {}) — every endpoint is real,",
        dir.display()
    );
    eprintln!(" but the audio is NOISE. Use --model/--codec with the real weights for speech.");
    eprintln!("{line}");
}
