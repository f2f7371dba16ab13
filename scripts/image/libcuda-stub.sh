#!/usr/bin/env bash
# Builds a do-nothing stand-in for the NVIDIA driver's libcuda.so.1, for running a CUDA build of
# higgs-serve where there is no GPU driver (the image build's --version probe, the image smoke test;
# NEVER shipped in the image: on a GPU host the NVIDIA container toolkit mounts the real one).
# Every driver function the binary imports (cu*, less cuBLAS/cuRAND, which have their own
# libraries) exists and returns CUDA_ERROR_NO_DEVICE (100), so `--device auto` falls back to the CPU
# and `--device cpu` never calls it. The binary is linked with -z now, so each imported symbol must
# exist even if it is never called.
#   usage: scripts/image/libcuda-stub.sh BINARY OUTDIR   -> OUTDIR/libcuda.so.1 (exit 0)
#   prints nothing and creates nothing when BINARY does not link libcuda.so.1.
# Needs: readelf, nm (binutils), cc.
set -euo pipefail
bin="$1"; out="$2"
readelf -d "$bin" | grep -q 'NEEDED.*\[libcuda\.so\.1\]' || exit 0
mkdir -p "$out"
nm -D --undefined-only "$bin" | awk '{print $NF}' | sed 's/@.*//' | grep -E '^cu[A-Z]' \
  | grep -v -E '^(cublas|curand)' | LC_ALL=C sort -u \
  | sed 's/.*/int &(void) { return 100; }/' > "$out/libcuda-stub.c"
[ -s "$out/libcuda-stub.c" ] || { echo "libcuda-stub: $bin links libcuda.so.1 but imports no cu* symbol?" >&2; exit 1; }
cc -shared -fPIC -O1 -o "$out/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$out/libcuda-stub.c"
rm -f "$out/libcuda-stub.c"
