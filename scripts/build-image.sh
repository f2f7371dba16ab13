#!/usr/bin/env bash
# Builds the RunPod image (the Dockerfile's layout) WITHOUT a Docker daemon and without pulling from a
# container registry, as one archive that `podman load`, `docker load` and `skopeo copy oci-archive:...`
# accept. Inputs, every one pinned:
#   1. Debian 12 root, by mmdebstrap from deb.debian.org: exactly the packages and versions in
#      scripts/image/debian-bookworm.lock (apt checks each .deb's sha256 against Debian's signed index);
#   2. cuBLAS + cuBLASLt, cuRAND and cudart (CUDA 13.0.2's versions) from NVIDIA's PyPI wheels,
#      version- and sha256-pinned in scripts/image/cuda-wheels.txt (pip --require-hashes);
#   3. the higgs-serve binary you give it (--bin; RunPod needs the `--features cuda` build) and the
#      tracked voices/ (git ls-files, less the cached *.codes, as .dockerignore does).
# Layers (gzip, byte-reproducible: sorted entries, fixed owners and mtimes, see scripts/image/oci.py):
#   base (Debian root, user higgs 10001) | CUDA libraries | binary + voices.
#
# usage: scripts/build-image.sh [--bin PATH] [--out FILE] [--tag NAME:TAG] [--user root|higgs]
#        scripts/build-image.sh --update-lock    # re-resolve the Debian package set (when a pinned
#                                                # version has left deb.debian.org), then commit the lock
# Defaults: --bin target/release/higgs-serve, --out target/image/higgs-serve.oci.tar,
#           --tag higgs-serve:<version from --version>, --user root (RunPod: see docs/deploy-runpod.md).
# Downloads, the base root, the CUDA tree and their packed layers are cached in $HIGGS_IMAGE_CACHE
# (default ~/.cache/higgs-serve/image, about 1.3 GB; only the app layer is packed at every build).
# Needs: root (mmdebstrap's root mode), mmdebstrap (apt-get installed on first use), python3 + pip,
# and for a CUDA binary readelf, nm, cc (a stand-in libcuda.so.1 to run its --version here).
# Then: podman load -i FILE | docker load -i FILE, or push without a daemon:
#       skopeo copy oci-archive:FILE docker://REGISTRY/higgs-serve:TAG
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
HERE="$ROOT/scripts/image"
LOCK="$HERE/debian-bookworm.lock"
WHEELS_REQ="$HERE/cuda-wheels.txt"
CACHE="${HIGGS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/higgs-serve/image}"
MIRROR="${HIGGS_DEBIAN_MIRROR:-http://deb.debian.org}"
SUITES=("deb $MIRROR/debian bookworm main" "deb $MIRROR/debian bookworm-updates main"
        "deb $MIRROR/debian-security bookworm-security main")
# The runtime user (also in the Dockerfile): the image's files are readable by it, /app/voices and
# its home are its own.
IMAGE_UID=10001
# Bump when the base or CUDA recipe below changes (invalidates the cached trees and layers).
BASE_RECIPE=3
CUDA_RECIPE=1

BIN="target/release/higgs-serve"; OUT="target/image/higgs-serve.oci.tar"; TAG=""; USER_MODE=root
UPDATE_LOCK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --user) USER_MODE="$2"; shift 2 ;;
    --update-lock) UPDATE_LOCK=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$USER_MODE" in root|higgs) ;; *) echo "--user must be root or higgs" >&2; exit 2 ;; esac

[ "$(id -u)" = 0 ] || { echo "build-image.sh needs root (mmdebstrap's root mode; files owned by several users)" >&2; exit 1; }
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "installing mmdebstrap (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/.build-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# dpkg drops documentation and translations (copyright files stay): the image is for running one binary.
DPKG_OPTS=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
           --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
           --dpkgopt='path-include=/usr/share/doc/*/copyright')
MM_OPTS=("${DPKG_OPTS[@]}" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)

if [ "$UPDATE_LOCK" = 1 ]; then
  # The essential set + ca-certificates (as the Dockerfile installs). /usr is merged by mmdebstrap's
  # merged-usr hook (usr-is-merged), not by the usrmerge package, which would pull in perl (47 MB).
  echo "resolving the Debian package set from $MIRROR ..."
  mmdebstrap -q --variant=essential --include=ca-certificates --architectures=amd64 "${MM_OPTS[@]}" \
    bookworm "$WORK/root" "${SUITES[@]}"
  {
    echo "# Debian 12 packages of the image's base layer: name=version, installed exactly (mmdebstrap"
    echo "# --variant=custom). Written by scripts/build-image.sh --update-lock on $(date -u +%Y-%m-%d) from"
    echo "# deb.debian.org (bookworm, bookworm-updates, bookworm-security). When a version has left the"
    echo "# mirror, either re-run --update-lock (and commit), or set"
    echo "# HIGGS_DEBIAN_MIRROR=https://snapshot.debian.org/archive/<path for that date> to rebuild this set."
    echo "# epoch: $(date -u -d "$(date -u +%Y-%m-%d)" +%s)   (mtime of every file of the base and CUDA layers)"
    dpkg-query --admindir="$WORK/root/var/lib/dpkg" -W -f '${Package}=${Version}\n' | LC_ALL=C sort
  } > "$LOCK"
  echo "wrote $LOCK ($(grep -c -v '^#' "$LOCK") packages)"
  exit 0
fi

[ -f "$LOCK" ] || { echo "missing $LOCK (run --update-lock)" >&2; exit 1; }
BASE_EPOCH="$(sed -n 's/^# epoch: \([0-9]*\).*/\1/p' "$LOCK")"
[ -n "$BASE_EPOCH" ] || { echo "$LOCK has no '# epoch:' line" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no binary at $BIN (build it: cargo build --release --features cuda; see docs/deploy-runpod.md)" >&2; exit 1; }

# ---- 1. base layer: the pinned Debian root (cached by the lock's and this recipe's hash) ----------
base_key="$( { cat "$LOCK"; echo "recipe $BASE_RECIPE uid $IMAGE_UID ${MM_OPTS[*]}"; } | sha256sum | cut -c1-16)"
BASE="$CACHE/base-$base_key"
if [ ! -f "$BASE.done" ]; then
  rm -rf "$BASE" "$CACHE"/base-*   # one cached base at a time
  echo "building the Debian base root ($(grep -c -v '^#' "$LOCK") pinned packages) ..."
  SOURCE_DATE_EPOCH="$BASE_EPOCH" mmdebstrap -q --variant=custom --architectures=amd64 \
    --include="$(grep -v '^#' "$LOCK" | paste -sd, -)" "${MM_OPTS[@]}" bookworm "$BASE" "${SUITES[@]}"
  # exactly the locked set, nothing more or less
  if ! diff <(grep -v '^#' "$LOCK") \
        <(dpkg-query --admindir="$BASE/var/lib/dpkg" -W -f '${Package}=${Version}\n' | LC_ALL=C sort); then
    echo "the installed package set differs from $LOCK" >&2; exit 1
  fi
  # Per-build and per-host leftovers; the runtime provides /dev, /etc/hostname, /etc/resolv.conf.
  rm -rf "$BASE"/dev/* "$BASE"/proc/* "$BASE"/sys/* "$BASE"/run/* "$BASE"/tmp/* \
         "$BASE"/var/log/* "$BASE"/var/cache/apt/* "$BASE"/var/lib/apt/lists/* \
         "$BASE"/var/cache/ldconfig/aux-cache "$BASE"/var/lib/dpkg/*-old "$BASE"/var/cache/debconf/*-old \
         "$BASE"/etc/hostname "$BASE"/etc/resolv.conf "$BASE"/etc/machine-id
  # the runtime user (no useradd: `passwd` is not in the set; fixed fields keep the layer reproducible)
  echo "higgs:x:$IMAGE_UID:$IMAGE_UID:higgs-serve:/home/higgs:/usr/sbin/nologin" >> "$BASE/etc/passwd"
  echo "higgs:x:$IMAGE_UID:" >> "$BASE/etc/group"
  install -d -m 0755 -o "$IMAGE_UID" -g "$IMAGE_UID" "$BASE/home/higgs"
  touch "$BASE.done"
fi

# ---- 2. CUDA layer: the libraries the CUDA binary links (readelf -d: libcublas.so.13 -> libcublasLt.so.13,
# libcurand.so.10; libcuda.so.1 is the host driver's, mounted by the NVIDIA container toolkit) + cudart ---
cuda_key="$( { echo "base $base_key recipe $CUDA_RECIPE"; grep -v '^#' "$WHEELS_REQ"; } | sha256sum | cut -c1-16)"
CUDA="$CACHE/cuda-$cuda_key"
CUDA_LIB="$CUDA/usr/local/cuda-13.0/lib64"
if [ ! -f "$CUDA.done" ]; then
  rm -rf "$CACHE"/cuda-*   # one cached CUDA tree at a time
  WHEELS="$CACHE/wheels"
  mkdir -p "$WHEELS"
  echo "fetching the CUDA wheels (pinned: $WHEELS_REQ) ..."
  # pip: the system's, else the project venv's (scripts/install-test-deps.sh; minimal Debian has none).
  PIP_PY=python3; python3 -m pip --version >/dev/null 2>&1 || PIP_PY="$ROOT/.venv-e2e/bin/python"
  "$PIP_PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$WHEELS_REQ" -d "$WHEELS"
  install -d "$CUDA_LIB" "$CUDA/usr/local/cuda-13.0/licenses" "$CUDA/etc/ld.so.conf.d"
  while read -r req; do
    case "$req" in ''|\#*) continue ;; esac
    name="${req%%==*}"; ver="${req#*==}"; ver="${ver%% *}"
    whl="$(ls "$WHEELS/$(echo "$name" | tr - _)-$ver-"*.whl)"
    python3 - "$whl" "$CUDA_LIB" "$CUDA/usr/local/cuda-13.0/licenses/$name" <<'EOF'
import sys, zipfile, os
whl, libdir, licdir = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        # the libraries (not libnvblas, the BLAS-interposer nothing here uses) and the licence
        if (n.startswith("nvidia/cu13/lib/") and ".so" in base and not base.startswith("libnvblas")) \
                or n.endswith("/License.txt"):
            dest = libdir if ".so" in base else licdir
            os.makedirs(dest, exist_ok=True)
            with z.open(n) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
            os.chmod(os.path.join(dest, base), 0o755 if ".so" in base else 0o644)
EOF
  done < "$WHEELS_REQ"
  ln -s cuda-13.0 "$CUDA/usr/local/cuda"
  # where the NVIDIA CUDA images look: the libraries' folder, and /usr/local/nvidia for driver mounts
  echo "/usr/local/cuda-13.0/lib64" > "$CUDA/etc/ld.so.conf.d/000-cuda-13-0.conf"
  printf '/usr/local/nvidia/lib\n/usr/local/nvidia/lib64\n' > "$CUDA/etc/ld.so.conf.d/nvidia.conf"
  # the loader cache of base + CUDA, computed on a throwaway hard-linked copy, shipped in this layer
  cp -al "$BASE" "$WORK/combined"
  cp -a "$CUDA/." "$WORK/combined/"
  ldconfig -X -r "$WORK/combined"
  cp "$WORK/combined/etc/ld.so.cache" "$CUDA/etc/ld.so.cache"
  rm -rf "$WORK/combined"
  touch "$CUDA.done"
  rm -rf "$WHEELS"   # the extracted tree is the cache; the wheels are fetched again when it goes
fi

# ---- 3. app layer: the binary and the default voices --------------------------------------------------
APP="$WORK/app"
install -D -m 0755 -o 0 -g 0 "$BIN" "$APP/usr/local/bin/higgs-serve"
install -d -m 0755 -o 0 -g 0 "$APP/app"
install -d -m 0755 -o "$IMAGE_UID" -g "$IMAGE_UID" "$APP/app/voices"
git ls-files -z voices/ | while IFS= read -r -d '' f; do
  case "$f" in *.codes|*.codes.json) continue ;; esac   # cached codes: as .dockerignore
  install -D -m 0644 -o "$IMAGE_UID" -g "$IMAGE_UID" "$f" "$APP/app/$f"
done

# The binary's version line, e.g. "higgs-serve 0.1.0 (abc1234)": run it against the image's own
# loader and libraries (a CUDA build also needs libcuda.so.1: a do-nothing stand-in, only for this).
STUB="$WORK/stub"; mkdir -p "$STUB"
bash "$HERE/libcuda-stub.sh" "$BIN" "$STUB"
version_line="$("$BASE/lib64/ld-linux-x86-64.so.2" --library-path "$CUDA_LIB:$STUB:$BASE/usr/lib/x86_64-linux-gnu" \
  "$BIN" --version)"
version="$(echo "$version_line" | awk '{print $2}')"
revision="$(echo "$version_line" | sed -n 's/.*(\(.*\)).*/\1/p')"; revision="${revision:-unknown}"
echo "binary: $version_line"
[ -n "$TAG" ] || TAG="higgs-serve:$version"
APP_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo "$BASE_EPOCH")"

# ---- image config: the Dockerfile's runtime settings (keep the two in step) ---------------------------
cat > "$WORK/config.json" <<EOF
{
  "Env": [
    "PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    "NVIDIA_VISIBLE_DEVICES=all",
    "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    "NVIDIA_REQUIRE_CUDA=cuda>=13.0",
    "CUDA_VERSION=13.0.2"
  ],
  "Entrypoint": ["higgs-serve"],
  "Cmd": ["runpod"],
  "WorkingDir": "/app",
  "ExposedPorts": {"8000/tcp": {}},
  $( [ "$USER_MODE" = higgs ] && echo "\"User\": \"$IMAGE_UID:$IMAGE_UID\"," )
  "Labels": {
    "org.opencontainers.image.title": "higgs-serve",
    "org.opencontainers.image.description": "Rust-native Higgs Audio v2 TTS: RunPod Serverless worker and OpenAI-compatible server",
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.version": "$version",
    "org.opencontainers.image.revision": "$revision",
    "org.opencontainers.image.base.name": "debian:bookworm (mmdebstrap, scripts/image/debian-bookworm.lock)"
  }
}
EOF

mkdir -p "$(dirname "$OUT")"
python3 "$HERE/oci.py" --out "$OUT" --tag "$TAG" --config "$WORK/config.json" --layer-cache "$CACHE/layers" \
  --layer "$BASE" "$BASE_EPOCH" "mmdebstrap bookworm: scripts/image/debian-bookworm.lock; user higgs ($IMAGE_UID)" "base-$base_key" \
  --layer "$CUDA" "$BASE_EPOCH" "CUDA 13.0.2 runtime libraries: scripts/image/cuda-wheels.txt" "cuda-$cuda_key" \
  --layer "$APP" "$APP_EPOCH" "higgs-serve $version ($revision) + voices/" - > "$OUT.json"
python3 - "$OUT.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"image {s['tag']} -> {s['image']}")
print(f"  compressed (what a registry stores and RunPod pulls): {s['compressed_bytes'] / 1e9:.3f} GB")
print(f"  unpacked (layer tars, what the container's disk holds): {s['unpacked_bytes'] / 1e9:.3f} GB")
for i, l in enumerate(s["layers"], 1):
    print(f"  layer {i}: {l['compressed_bytes'] / 1e6:8.1f} MB compressed {l['unpacked_bytes'] / 1e6:8.1f} MB unpacked  {l['digest'][:19]}")
print(f"  manifest {s['manifest_digest']}")
EOF
