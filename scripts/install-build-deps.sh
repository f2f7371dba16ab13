#!/usr/bin/env bash
# Installs what building higgs-serve needs beyond rustup's toolchain, when it is missing: a C
# compiler/linker (rustc links through `cc`; some crates compile C) and cmake (higgs-audio-io's
# `opus` feature builds the libopus source bundled in opusic-sys, statically linked, so nothing is
# needed at run time). Debian/Ubuntu (apt-get) and Fedora/RHEL (dnf); elsewhere it says what to
# install. Idempotent: does nothing when both are there.
set -euo pipefail
need_cmd=()
command -v cc >/dev/null 2>&1 || need_cmd+=(cc)
command -v cmake >/dev/null 2>&1 || need_cmd+=(cmake)
command -v cargo >/dev/null 2>&1 || {
  echo "cargo is not installed: install Rust with https://rustup.rs, then run this again" >&2
  exit 1
}
[ ${#need_cmd[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "the build needs ${need_cmd[*]}, and installing them needs root: install a C compiler and cmake, then run this again" >&2
  exit 1
fi
if command -v apt-get >/dev/null 2>&1; then
  pkgs=(); for c in "${need_cmd[@]}"; do case $c in cc) pkgs+=(gcc libc6-dev) ;; cmake) pkgs+=(cmake make) ;; esac; done
  echo "installing build prerequisites: ${pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  pkgs=(); for c in "${need_cmd[@]}"; do case $c in cc) pkgs+=(gcc glibc-devel) ;; cmake) pkgs+=(cmake make) ;; esac; done
  echo "installing build prerequisites: ${pkgs[*]}"
  $SUDO dnf install -y -q "${pkgs[@]}"
else
  echo "the build needs ${need_cmd[*]} (a C compiler and cmake); install them with your package manager, then run this again" >&2
  exit 1
fi
