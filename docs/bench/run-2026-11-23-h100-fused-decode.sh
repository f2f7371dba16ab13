#!/usr/bin/env bash
# Issue #8, GPU run 6 (H100): run 5 + fused decode kernels in the graphed step (q|k|v as one GEMM,
# RoPE + KV write in one kernel, masked softmax in one kernel), growing stream chunks
# (4, 25, 50, 100 frames) and TF32 for the codec's f32 GEMMs when the model is bf16.
# Carries .gpu/ (xz): higgs-serve (cuda build), t_decode_graph, t_parity and the llm fixtures.
# Run from the repository root: bash docs/bench/run-2026-11-23-h100-fused-decode.sh (carry [".gpu"]);
# its $OUT is docs/bench/h100-fused-decode/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=1
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
tar -C $W -xf $W/fixtures.tar; chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
for t in decode_graph parity; do
  echo "== $t test, f32 CUDA (graph body with the fused decode kernels)"
  HIGGS_FIXTURES=$W HIGGS_TEST_DEVICE=cuda timeout 120 $W/t_$t --test-threads=1 2>&1 | tail -9 | tee $OUT/cuda_f32_${t}_test.txt
done
if [ ! -f /tmp/full/model/config.json ]; then
  echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
M="--model /tmp/full/model --device cuda --dtype bf16"
echo "== bench-step context 256, graphs + fused decode kernels"
timeout 120 $B dev bench-step $M --batch 1,8,32,64,128,256 --context 256 --steps 30 --json 2>&1 | tee $OUT/bench_step_fused.jsonl | cut -c1-200
echo "== bench-step, HIGGS_FUSED_DECODE=0 (graphs, unfused step body)"
HIGGS_FUSED_DECODE=0 timeout 90 $B dev bench-step $M --batch 1,32,256 --context 256 --steps 30 --json 2>&1 | tee $OUT/bench_step_unfused.jsonl | cut -c1-200
echo "== codec TF32 vs f32: same greedy bf16 generation, two codec precisions"
S="synth --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16 --text Checking_the_codec_precision. --force-audio --max-new-tokens 120 --seed 1 --temperature 0"
HIGGS_CODEC_TF32=0 timeout 60 $B $S --out $OUT/full_codec_f32.wav 2>&1 | tail -1
timeout 60 $B $S --out $OUT/full_codec_tf32.wav 2>&1 | tail -1
python3 - "$OUT" <<'PY' | tee $OUT/codec_tf32_compare.txt
import sys, wave, struct
o = sys.argv[1]
def rd(n):
    w = wave.open(f"{o}/{n}.wav"); b = w.readframes(w.getnframes()); return struct.unpack(f"<{len(b)//2}h", b)
x, y = rd("full_codec_tf32"), rd("full_codec_f32")
m = max((abs(p - q) for p, q in zip(x, y)), default=0); peak = max((abs(p) for p in y), default=0)
rms = (sum((p - q) ** 2 for p, q in zip(x, y)) / max(len(x), 1)) ** 0.5
print(f"tf32 vs f32 codec: {len(x)} / {len(y)} samples, max |diff| {m} LSB, rms diff {rms:.2f} LSB, peak {peak} LSB")
PY
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== engine bench (defaults: growing chunks, TF32 codec)"
RUST_LOG=higgs_engine=debug,info timeout 200 $B $E --concurrency 1,1,8,32,128,256 --frames 100 --json $OUT/bench_engine.json 2> $OUT/bench_engine.log
grep -E "ready|concurrency" $OUT/bench_engine.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-260
echo "== engine bench, 250 frames"
timeout 150 $B $E --concurrency 1,32,256 --frames 250 --json $OUT/bench_engine_250.json 2>&1 | grep -E "concurrency" | cut -c1-260
echo "== engine bench, 250 frames, fixed 25-frame chunks + f32 codec (run 5 settings)"
HIGGS_CODEC_TF32=0 timeout 120 $B $E --concurrency 256 --frames 250 --max-chunk-frames 25 --json $OUT/bench_engine_250_fixed_f32.json 2>&1 | grep -E "concurrency" | cut -c1-260
echo "== engine bench, 250 frames, growing chunks + f32 codec"
HIGGS_CODEC_TF32=0 timeout 120 $B $E --concurrency 256 --frames 250 --json $OUT/bench_engine_250_f32.json 2>&1 | grep -E "concurrency" | cut -c1-260
