#!/usr/bin/env bash
# Issue #8, GPU run 2 (H100): run 1 + fused SwiGLU (model) and fused Snake (codec) CUDA kernels.
# Carries .gpu/ (xz-compressed): higgs-serve (cuda build), the codec's f32 test binaries
# (parity, streaming, loading) and the codec fixtures. Run through the device tool from the
# repository root: bash docs/bench/run-2026-11-23-h100-fused.sh (carry [".gpu"]); its $OUT is
# committed as docs/bench/h100-fused/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=0
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
tar -C $W -xf $W/fixtures.tar; chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
echo "== codec f32 CUDA tests (HIGGS_TEST_DEVICE=cuda): native conv-transpose + fused Snake"
for t in $W/t_*; do
  echo "== $(basename $t)"
  HIGGS_FIXTURES=$W/fixtures HIGGS_TEST_DEVICE=cuda timeout 120 $t --test-threads=1 --nocapture 2>&1 | grep -v "^\s*$" | tail -30
done 2>&1 | tee $OUT/cuda_f32_codec_tests.txt | grep -E "^== |test result|FAILED|panicked" | head -20
echo "== tiny model end to end: greedy synth on CUDA f32 (fused SwiGLU + Snake) vs CPU f32"
$B dev make-checkpoint --preset tiny --out /tmp/tiny 2>&1 | tail -1
S="synth --model /tmp/tiny/model --codec /tmp/tiny/codec --text Hello_from_the_GPU. --force-audio --max-new-tokens 80 --seed 1 --temperature 0"
$B $S --device cuda --dtype f32 --out $OUT/tiny_cuda_f32.wav 2>&1 | tail -1
$B $S --device cpu --out $OUT/tiny_cpu_f32.wav 2>&1 | tail -1
$B $S --device cuda --dtype bf16 --out $OUT/tiny_cuda_bf16.wav 2>&1 | tail -1
HIGGS_FUSED_SWIGLU=0 HIGGS_CODEC_SNAKE=generic $B $S --device cuda --dtype bf16 --out $OUT/tiny_cuda_bf16_unfused.wav 2>&1 | tail -1
python3 - "$OUT" <<'PY' | tee $OUT/tiny_wav_compare.txt
import sys, wave, struct
o = sys.argv[1]
def rd(n):
    w = wave.open(f"{o}/{n}.wav"); b = w.readframes(w.getnframes()); return struct.unpack(f"<{len(b)//2}h", b)
def cmp(a, b):
    x, y = rd(a), rd(b); m = max((abs(p - q) for p, q in zip(x, y)), default=0)
    print(f"{a} vs {b}: {len(x)} / {len(y)} samples, max |diff| {m} LSB (int16)")
cmp("tiny_cuda_f32", "tiny_cpu_f32"); cmp("tiny_cuda_bf16", "tiny_cuda_bf16_unfused"); cmp("tiny_cuda_bf16", "tiny_cuda_f32")
PY
echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
nvidia-smi --query-gpu=memory.used --format=csv,noheader -lms 250 > $OUT/gpu_mem_trace.csv & SMI=$!
M="--model /tmp/full/model --device cuda --dtype bf16"
echo "== bench-step context 256"; timeout 120 $B dev bench-step $M --batch 1,8,32,64,128,256 --context 256 --steps 20 --json 2>&1 | tee $OUT/bench_step_full_bf16.jsonl | tail -6
echo "== bench-step context 1024"; timeout 90 $B dev bench-step $M --batch 1,64,256 --context 1024 --steps 20 --json 2>&1 | tee $OUT/bench_step_full_bf16_ctx1024.jsonl | tail -3
echo "== bench-step, fused kernels off"; HIGGS_FUSED_SWIGLU=0 timeout 60 $B dev bench-step $M --batch 1,64,256 --context 256 --steps 20 --json 2>&1 | tee $OUT/bench_step_full_bf16_unfused.jsonl | tail -3
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== engine warm-up (driver JIT of the kernels)"; timeout 60 $B $E --concurrency 2 --frames 30 2>&1 | tail -1
echo "== engine bench"; timeout 150 $B $E --concurrency 1,8,32,128,256 --frames 100 --json $OUT/bench_engine_full_bf16.json 2>&1 | tail -6
echo "== engine bench, HIGGS_PROFILE_SYNC=1"; HIGGS_PROFILE_SYNC=1 timeout 60 $B $E --concurrency 1,32 --frames 100 --json $OUT/bench_engine_full_bf16_profile.json 2>&1 | tail -2
echo "== engine bench, fused kernels off"; HIGGS_FUSED_SWIGLU=0 HIGGS_CODEC_SNAKE=generic timeout 60 $B $E --concurrency 32,256 --frames 100 --json $OUT/bench_engine_full_bf16_unfused.json 2>&1 | tail -2
kill $SMI
