//! Records the commit the binary is built from, for `higgs-serve --version` ("0.1.0 (abc1234)").
//!
//! Order: `HIGGS_GIT_COMMIT` from the environment (the Dockerfile passes it as a build argument,
//! since `.git` is not in its build context), else `git rev-parse --short HEAD`, else "unknown"
//! (a source tarball, or no git installed). Re-runs when the variable changes or HEAD moves.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=HIGGS_GIT_COMMIT");
    let from_env = std::env::var("HIGGS_GIT_COMMIT")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let commit = from_env.or_else(|| {
        // Re-run when HEAD moves: HEAD itself (checkout), the branch's ref (commit) and packed-refs.
        // Only existing paths: a missing one would make cargo re-run this script on every build.
        if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
            let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
                .unwrap_or_else(|| dir.clone());
            let mut watch = vec![
                Path::new(&dir).join("HEAD"),
                Path::new(&common).join("packed-refs"),
            ];
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch.push(Path::new(&common).join(r));
            }
            for p in watch.iter().filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
        git(&["rev-parse", "--short=7", "HEAD"])
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HIGGS_GIT_COMMIT={commit}");
}
