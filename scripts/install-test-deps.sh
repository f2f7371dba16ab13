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
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing test dependencies: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
