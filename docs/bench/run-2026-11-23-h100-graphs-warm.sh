#!/usr/bin/env bash
# Issue #8, GPU run 5 (H100): run 4 + engine warm-up (decode graphs captured for every
# power-of-two batch span, kernels loaded) before the first request, and a TTFA breakdown.
# Carries .gpu/ (xz): higgs-serve (cuda build) and t_decode_graph. Run from the repository root:
#   bash docs/bench/run-2026-11-23-h100-graphs-warm.sh   (carry [".gpu"]); $OUT is docs/bench/h100-graphs-warm/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=1
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
echo "== decode_graph test, f32 CUDA"
HIGGS_TEST_DEVICE=cuda timeout 120 $W/t_decode_graph --test-threads=1 2>&1 | tail -8 | tee $OUT/cuda_f32_decode_graph_test.txt
if [ ! -f /tmp/full/model/config.json ]; then
  echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== engine bench (c=1 three times: first level vs warm), TTFA breakdown at debug level"
RUST_LOG=higgs_engine=debug,info timeout 240 $B $E --concurrency 1,1,1,8,32,128,256 --frames 100 --json $OUT/bench_engine_warm.json 2> $OUT/bench_engine_warm.log
grep -E "warm-up|ready|concurrency" $OUT/bench_engine_warm.log | cut -c1-260
grep "first audio" $OUT/bench_engine_warm.log | head -4 | cut -c1-300
echo "== engine bench, 250 frames (10 s per request)"
timeout 150 $B $E --concurrency 1,32,256 --frames 250 --json $OUT/bench_engine_warm_250.json 2>&1 | grep -E "ready|concurrency" | cut -c1-260
