#!/usr/bin/env bash
# Device call (2026-12-07, third session): the GPU suite with the pointwise-matmul codec path on by
# default (its gate), then `dev bench-codec --profile` (the codec's window decode split by op) for
# f32/bf16 and matmul/conv1d pointwise, and — when .gpu/cudnn-higgs-serve.xz came along — the same
# with the codec's convolutions on cuDNN plus engine levels of both builds.
# Carry: .gpu (scripts/gpu-pack.sh suite [+ cudnn]). Results: $OUT/res.tar.xz + console.
set -u
SECONDS=0
RES=/tmp/res; rm -rf $RES; mkdir -p $RES
find / -name 'libcudnn*.so*' -not -path '/proc/*' 2>/dev/null | head -20 > $RES/cudnn_libs.txt
CUDNN_DIR=$(dirname "$(grep -m1 'libcudnn.so.9$' $RES/cudnn_libs.txt || echo /nonexistent/x)")
# LIMIT: the call's time limit (seconds); the suite runs last in what is left of it.
LIMIT=${LIMIT:-600}
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
mkdir -p /tmp/gpu; xz -dc .gpu/higgs-serve.xz > /tmp/gpu/higgs-serve; chmod +x /tmp/gpu/higgs-serve
[ -f /tmp/full/codec/config.json ] || /tmp/gpu/higgs-serve dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $RES/nvidia-smi.txt
B=/tmp/gpu/higgs-serve
C=/tmp/full/codec
echo "== codec window decode profile (full-size random codec)"
prof() { # NAME BINARY ENV...
  local name=$1 bin=$2; shift 2
  env "$@" timeout 90 $bin dev bench-codec --codec $C --device cuda --batch 1,32,256 --new-frames 25 --runs 5 --profile --json > $RES/codec_$name.jsonl 2> $RES/codec_$name.err
  env "$@" timeout 60 $bin dev bench-codec --codec $C --device cuda --batch 64 --new-frames 100 --runs 3 --profile --json >> $RES/codec_$name.jsonl 2>> $RES/codec_$name.err
  python3 - "$name" $RES/codec_$name.jsonl <<'PY'
import json, sys
for l in open(sys.argv[2]):
    if not l.startswith("{"): continue
    d = json.loads(l); p = d.get("profile_ms") or {}; t = d.get("profile_total_ms") or 1
    ops = " ".join(f"{k}={v['ms']:.1f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]["ms"]))
    print(f"{sys.argv[1]:14} b={d['batch']:3} new={d['new_frames']:3} decode {d['decode_ms']:8.2f} ms {d['audio_s_per_s']:8.1f} audio-s/s | synced {t:.1f} ms: {ops}")
PY
  tail -2 $RES/codec_$name.err | grep -i error
}
prof f32_matmul $B HIGGS_CODEC_DTYPE=f32 HIGGS_CODEC_POINTWISE=matmul
prof f32_conv1d $B HIGGS_CODEC_DTYPE=f32 HIGGS_CODEC_POINTWISE=generic
prof bf16_matmul $B HIGGS_CODEC_DTYPE=bf16 HIGGS_CODEC_POINTWISE=matmul
prof f32_convt_generic $B HIGGS_CODEC_DTYPE=f32 HIGGS_CODEC_CONVT=generic
if [ -f .gpu/cudnn-higgs-serve.xz ]; then
  echo "== cuDNN build (libcudnn: $CUDNN_DIR)"
  xz -dc .gpu/cudnn-higgs-serve.xz > /tmp/gpu/cudnn-higgs-serve; chmod +x /tmp/gpu/cudnn-higgs-serve
  export LD_LIBRARY_PATH=$CUDNN_DIR:$LD_LIBRARY_PATH
  D=/tmp/gpu/cudnn-higgs-serve
  prof cudnn_f32 $D HIGGS_CODEC_DTYPE=f32
  prof cudnn_bf16 $D HIGGS_CODEC_DTYPE=bf16
  # Same greedy codes decoded by both builds: audio must match within f32 rounding.
  M="--model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
  for b in base:$B cudnn:$D; do n=${b%%:*}; bin=${b#*:}
    timeout 60 $bin synth $M --text "Same codes, two codec builds." --force-audio --max-new-tokens 120 --seed 3 --out $RES/synth_$n.wav > $RES/synth_$n.log 2>&1; echo "synth $n rc=$?"
  done
  python3 - $RES/synth_base.wav $RES/synth_cudnn.wav <<'PY'
import sys, wave, struct, math
def rd(p):
    w = wave.open(p); n = w.getnframes(); return struct.unpack("<%dh" % n, w.readframes(n))
try:
    a, b = rd(sys.argv[1]), rd(sys.argv[2]); n = min(len(a), len(b))
    d = [a[i] - b[i] for i in range(n)]; s = sum(x * x for x in a[:n]) or 1; e = sum(x * x for x in d) or 1e-9
    print(f"cudnn vs base audio: {len(a)}/{len(b)} samples, max|d| {max(map(abs, d))} LSB, SNR {10 * math.log10(s / e):.1f} dB")
except Exception as ex:
    print("audio compare failed:", ex)
PY
  # The suite's engine.json is the base build's levels of this call; the cuDNN build's beside it.
  for n in cudnn; do
    timeout 110 $D bench $M --concurrency 32,256 --frames 250 --json $RES/engine_$n.json 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-200
  done
fi
if [ "${SKIP_SUITE:-0}" != 1 ]; then
  left=$((LIMIT - SECONDS - 25)); echo "== suite with ${left}s left"
  OUT=$RES GPU_SUITE_SKIP_FUSED=1 timeout $left bash scripts/gpu-suite.sh > $RES/suite_console.txt 2>&1
  grep -E "^==|REGRESSION|^ok|http/engine|FAILED|panicked|test result|baseline|concurrency" $RES/suite_console.txt | cut -c1-200
fi
cd /tmp && tar -cJf "$OUT/res.tar.xz" res && ls -la "$OUT"
