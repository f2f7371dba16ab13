#!/usr/bin/env bash
# Installs the external programs the test suite uses (independent decoders for audio round trips,
# ...). Idempotent; safe to run on a fresh machine. Each entry: command to probe, Debian package.
set -euo pipefail
need=()
probe() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
probe ffprobe ffmpeg
probe sox sox
# Build tool, not a test tool: higgs-audio-io's `opus` feature compiles the libopus source bundled
# in opusic-sys with cmake (statically linked, so nothing is needed at run time).
probe cmake cmake
probe curl curl
# Headless browser for the web page test (tests/e2e_web, driven over the DevTools protocol).
probe chromium chromium
# The image smoke test (scripts/smoke-image.sh): mmdebstrap builds the image's Debian root, podman
# starts the image; runc because crun refuses cgroup v1 "hybrid" hosts such as these VMs.
probe mmdebstrap mmdebstrap
probe podman podman
probe runc runc
# The Python clients' venv (below) needs python3 with venv + ensurepip: Debian ships ensurepip in
# python3-venv, which a minimal root (or a server install) does not have.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing test dependencies: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# S3-compatible server for higgs-storage's upload tests: s3s-fs (crates.io) verifies AWS SigV4 signatures,
# both header-signed requests and presigned URLs, against the --access-key/--secret-key it is started with.
# Installed into target/test-tools (git-ignored, project-local); the tests find it there or at $HIGGS_S3S_FS.
# 0.14.1 is the newest release whose rust-version (1.92) the workspace's toolchain meets.
S3S_FS_VERSION=0.14.1
S3S_FS_ROOT="$(cd "$(dirname "$0")/.." && pwd)/target/test-tools"
if [ "$(cat "$S3S_FS_ROOT/s3s-fs.version" 2>/dev/null)" != "$S3S_FS_VERSION" ] || [ ! -x "$S3S_FS_ROOT/bin/s3s-fs" ]; then
  echo "installing test dependency: s3s-fs $S3S_FS_VERSION (S3 server for higgs-storage tests)"
  cargo install --locked --quiet s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$S3S_FS_ROOT"
  echo "$S3S_FS_VERSION" > "$S3S_FS_ROOT/s3s-fs.version"
fi

# Python clients for the end-to-end tests (scripts/e2e.sh): the official openai and runpod packages,
# pytest, schemathesis and websocket-client (Chromium's DevTools protocol, tests/e2e_web), pinned, in a
# project-local venv (.venv-e2e, git-ignored).
E2E_VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv-e2e"
E2E_PKGS="openai==3.54.0 runpod==1.12.0 pytest==9.2.0 schemathesis==4.32.5 websocket-client==1.9.2"
if [ "$(cat "$E2E_VENV/.pkgs" 2>/dev/null)" != "$E2E_PKGS" ]; then
  echo "installing test dependencies: $E2E_PKGS (venv $E2E_VENV)"
  python3 -m venv --clear "$E2E_VENV"
  # shellcheck disable=SC2086
  "$E2E_VENV/bin/pip" install --quiet --disable-pip-version-check $E2E_PKGS
  echo "$E2E_PKGS" > "$E2E_VENV/.pkgs"
fi
