#!/usr/bin/env bash
# Codec levers of the engine-throughput issue, one device call on the warm machine right after
# the GPU suite of the same build (scripts/gpu-suite.sh, which leaves /tmp/gpu and /tmp/full):
#  1. audio: the same greedy generation decoded with the f32 and the bf16 decoder, and with the
#     pointwise convs as im2col convs (the old path) vs one matmul (new default) -> SNR in dB;
#  2. engine levels (250 frames, default sampling) in one binary: HIGGS_CODEC_DTYPE=bf16,
#     HIGGS_CODEC_POINTWISE=generic (the codec of the previous build) / =matmul, bf16 + 50-frame
#     chunks (explicit values: the build's default for the pointwise path may be either);
#  3. the previous GPU-measured build (.gpu/base-higgs-serve.xz, commit in .gpu/base-commit) on
#     the same card, the same levels.
set -u
O=${OUT:-/tmp/codec}; mkdir -p "$O"
# CODEC_AB_TESTS=1: first the suite's CUDA tests (new: decoder_dtype), for a call that has to stand
# alone (the suite's step 1; it also unpacks the build into /tmp/gpu).
if [ "${CODEC_AB_TESTS:-0}" = 1 ]; then
  GPU_SUITE_TESTS_ONLY=1 OUT=$O/tests bash scripts/gpu-suite.sh 2>&1 | grep -E "^== |test result|FAILED|panicked|SNR" | cut -c1-300
  # The bf16 decoder's accuracy on the tiny fixture codec with the CUDA kernels (printed SNRs).
  HIGGS_TEST_DEVICE=cuda HIGGS_FIXTURES=/tmp/gpu/fixtures timeout 60 /tmp/gpu/t_codec_decoder_dtype --test-threads=1 --nocapture 2>&1 \
    | grep -E "SNR|test result" | tee "$O/decoder_dtype_cuda.txt"
fi
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
W=/tmp/gpu; mkdir -p $W
[ -x $W/higgs-serve ] || { xz -dc .gpu/higgs-serve.xz > $W/higgs-serve; chmod +x $W/higgs-serve; }
xz -dc .gpu/base-higgs-serve.xz > $W/base-higgs-serve; chmod +x $W/base-higgs-serve
B=$W/higgs-serve
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$O/nvidia-smi.txt"
echo "head $(cat .gpu/commit), base $(cat .gpu/base-commit)" | tee "$O/commits.txt"
[ -f /tmp/full/model/config.json ] || $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
M="--model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== 1. decoded audio, same codes"
S="synth $M --text Checking_the_codec_precision_of_the_acoustic_decoder. --force-audio --max-new-tokens 200 --seed 1 --temperature 0"
HIGGS_CODEC_POINTWISE=matmul timeout 45 $B $S --out "$O/f32.wav" 2>&1 | tail -1
HIGGS_CODEC_DTYPE=bf16 timeout 45 $B $S --out "$O/bf16.wav" 2>&1 | tail -1
HIGGS_CODEC_POINTWISE=generic timeout 45 $B $S --out "$O/f32_im2col.wav" 2>&1 | tail -1
timeout 45 $W/base-higgs-serve $S --out "$O/f32_base.wav" 2>&1 | tail -1
python3 - "$O" <<'PY' | tee "$O/audio_compare.txt"
import sys, wave, struct, math
o = sys.argv[1]
def rd(n):
    w = wave.open(f"{o}/{n}.wav"); b = w.readframes(w.getnframes()); return struct.unpack(f"<{len(b)//2}h", b)
ref = rd("f32_base")
for n in ("f32", "f32_im2col", "bf16"):
    x = rd(n); k = min(len(x), len(ref))
    err = sum((x[i] - ref[i]) ** 2 for i in range(k)); sig = sum(v * v for v in ref[:k])
    m = max((abs(x[i] - ref[i]) for i in range(k)), default=0)
    snr = 10 * math.log10(sig / err) if err else float("inf")
    print(f"{n} vs base f32: {len(x)}/{len(ref)} samples, max |diff| {m} LSB, rms diff {math.sqrt(err / max(k, 1)):.2f} LSB, SNR {snr:.1f} dB")
PY
echo "== 2./3. engine levels"
E="bench $M --concurrency 1,32,256 --frames 250"
run() { # name binary [VAR=value ...]
  local name=$1 bin=$2; shift 2
  env "$@" timeout 100 $bin $E --json "$O/$name.json" 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-260 | sed "s/^/$name: /"
}
run bf16 $B HIGGS_CODEC_DTYPE=bf16 HIGGS_CODEC_POINTWISE=matmul
run base $W/base-higgs-serve
run head $B HIGGS_CODEC_POINTWISE=matmul
run im2col $B HIGGS_CODEC_POINTWISE=generic
run bf16_chunk50 $B HIGGS_CODEC_DTYPE=bf16 HIGGS_CODEC_POINTWISE=matmul HIGGS_CHUNK_FRAMES=50
python3 - "$O" <<'PY' | tee "$O/summary.txt"
import json, os, sys
o = sys.argv[1]
for n in ("head", "base", "im2col", "bf16", "bf16_chunk50"):
    try: d = json.load(open(f"{o}/{n}.json"))
    except Exception as e: print(n, "missing", e); continue
    for l in d["levels"]:
        print(f"{n:13s} c={l['concurrency']:3d} audio-s/s {l['audio_s_per_s']:7.1f} fps/stream {l['per_stream_frames_per_s_mean']:6.1f} "
              f"ttfa p50 {l['ttfa_p50_ms']:7.0f} ms codec {l['phase_codec_s']:5.2f} s forward {l['phase_forward_s']:5.2f} s failed {l['failed']}")
PY
