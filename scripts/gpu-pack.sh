#!/usr/bin/env bash
# Builds (cuda, release) and packs what scripts/gpu-suite.sh needs into the git-ignored .gpu/,
# the device tool's `carry`. The binary, every test binary and all fixtures do not fit one call's
# 64 MiB carry, hence two packs:
#   scripts/gpu-pack.sh suite    higgs-serve, the CUDA tests without llm fixtures, codec fixtures
#   scripts/gpu-pack.sh parity   model + generation parity tests and the llm fixtures
#   scripts/gpu-pack.sh cudnn    adds .gpu/cudnn-higgs-serve.xz: the `cudnn` feature build (A/B)
# Needs the CUDA toolchain of ../shared/cuda (sourced here).
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES=${HIGGS_FIXTURES:-../shared/fixtures}
# shellcheck disable=SC1091
source ../shared/cuda/setup.sh >/dev/null
if [ "${1:-}" != cudnn ]; then rm -rf .gpu; mkdir -p .gpu; git rev-parse --short HEAD > .gpu/commit; fi
# Builds the tests `PKG:TEST ...` with --no-run and packs each executable as .gpu/t_NAME.xz
# (NAME = PKG's last word + _TEST, e.g. higgs-model:parity -> t_model_parity).
pack_tests() { # FEATURES PKG:TEST...
  local features=$1; shift
  for spec in "$@"; do
    local pkg=${spec%%:*} test=${spec##*:}
    local exe
    exe=$(cargo test --release -p "$pkg" --features "$features" --test "$test" --no-run \
      --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$test" | tail -1)
    [ -n "$exe" ] || { echo "building $spec failed" >&2; exit 1; }
    xz -T0 -6 -c "$exe" > ".gpu/t_${pkg#higgs-}_${test}.xz"
  done
}
pack_fixtures() { for n in "$@"; do tar -C "$FIXTURES" -cf - "$n" | xz -T0 -3 > ".gpu/fixtures-$n.tar.xz"; done; }
# A link-time stub of libcudnn.so.9 (every cudnn* function cudarc binds), as ../shared/cuda does
# for the other CUDA libraries: the real library is the GPU host's (its PyTorch install).
cudnn_stub() {
  local cudarc dir=$PWD/target/cudnn-stub
  local v; v=$(grep -A1 '^name = "cudarc"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
  cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$v" | head -1)
  mkdir -p "$dir"
  grep -oh 'fn cudnn[A-Za-z0-9_]*' "$cudarc"/src/cudnn/sys/mod.rs | sed 's/^fn //' | sort -u \
    | sed 's/.*/void &(void){}/' > "$dir/cudnn.c"
  gcc -shared -fPIC -o "$dir/libcudnn.so" -Wl,-soname,libcudnn.so.9 "$dir/cudnn.c"
  export LIBRARY_PATH="$dir:$LIBRARY_PATH"
}
case "${1:-}" in
  cudnn)
    # The same binary with the codec's convolutions on cuDNN, beside a `suite` pack (kept).
    mkdir -p .gpu; cudnn_stub
    cargo build --release --features cudnn -p higgs-serve
    xz -T0 -6 -c target/release/higgs-serve > .gpu/cudnn-higgs-serve.xz ;;
  suite)
    cargo build --release --features cuda -p higgs-serve
    xz -T0 -6 -c target/release/higgs-serve > .gpu/higgs-serve.xz
    pack_tests cuda higgs-engine:sampling_device
    pack_tests cuda higgs-model:decode_graph higgs-codec:parity higgs-codec:decoder_dtype higgs-codec:streaming
    pack_fixtures codec ;;
  parity)
    pack_tests cuda higgs-model:parity
    pack_tests cuda,higgs-codec/cuda higgs-engine:generation_parity
    pack_fixtures llm text-tokenizer prompts ;;
  *) echo "usage: scripts/gpu-pack.sh suite|parity|cudnn" >&2; exit 2 ;;
esac
du -sh .gpu; ls -la .gpu
