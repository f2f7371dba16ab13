#!/usr/bin/env bash
# Checks the README's two commands on a fresh machine: a minimal Debian 12 root (mmdebstrap, no
# cmake, no ffmpeg, no Python clients, no Rust) with only rustup installed, the repository cloned
# into it at HEAD, then `scripts/serve.sh serve --demo` (must answer /health and a speech request)
# and `scripts/test.sh` (the whole test command, image smoke test included). Needs root.
#   scripts/fresh-root-check.sh [DIR]     (default /tmp/higgs-fresh-root; removed first)
# The sandbox these machines run in intercepts TLS with its own CA: its certificates in
# /usr/local/share/ca-certificates are copied into the root (a real fresh machine has no such CA).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
R=${1:-/tmp/higgs-fresh-root}
SHARED="$REPO/../shared"
cleanup() { for m in root/shared sys dev/pts dev proc; do umount -R "$R/$m" 2>/dev/null || true; done; umount "$R" 2>/dev/null || true; }
trap cleanup EXIT
cleanup; rm -rf "$R"
command -v mmdebstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq mmdebstrap >/dev/null; }
mmdebstrap --variant=minbase --include=ca-certificates,curl,git bookworm "$R" http://deb.debian.org/debian
cp /etc/resolv.conf "$R/etc/resolv.conf"
cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null && chroot "$R" update-ca-certificates >/dev/null || true
# / must be a mount point and cgroups visible for podman (the image smoke test) inside the root.
mount --bind "$R" "$R"; mount --bind /proc "$R/proc"; mount --bind /dev "$R/dev"; mount --bind /dev/pts "$R/dev/pts"; mount --rbind /sys "$R/sys"
mkdir -p "$R/root/shared"; mount --bind -o ro "$SHARED" "$R/root/shared"
git clone -q "$REPO" "$R/root/higgs-serve"
in_root() { unshare --mount chroot "$R" /bin/bash -lc "export PATH=/root/.cargo/bin:\$PATH; cd /root/higgs-serve && $1"; }
in_root 'curl -sSf https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init -o /tmp/rustup-init && chmod +x /tmp/rustup-init && /tmp/rustup-init -y --profile minimal >/dev/null'
echo "== README run command: scripts/serve.sh serve --demo"
in_root 'scripts/serve.sh serve --demo --port 18999' > "$R/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 1 1200); do curl -sf localhost:18999/health >/dev/null 2>&1 && break; sleep 1; done
curl -sf localhost:18999/health | head -c 200; echo
curl -sf -o "$R/speech.wav" -H 'Content-Type: application/json' \
  -d '{"model":"higgs","input":"Hello from a fresh root.","voice":"belinda","response_format":"wav"}' localhost:18999/v1/audio/speech
echo "speech: $(stat -c %s "$R/speech.wav") bytes"
kill $SERVE 2>/dev/null; pkill -f 'higgs-serve serve --demo --port 18999' || true
echo "== README test command: scripts/test.sh"
in_root 'scripts/test.sh'
echo "fresh root: both README commands passed"
