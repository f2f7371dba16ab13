#!/usr/bin/env bash
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=0
B=.gpu/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
$B dev make-checkpoint --preset tiny --out /tmp/tiny 2>&1 | tail -1
echo "== tiny synth cuda f32"; $B synth --model /tmp/tiny/model --codec /tmp/tiny/codec --device cuda --dtype f32 --text "Hello from the GPU." --force-audio --max-new-tokens 80 --seed 1 --temperature 0 --out $OUT/tiny_gpu.wav 2>&1 | tail -3
echo "== tiny synth cpu f32"; $B synth --model /tmp/tiny/model --codec /tmp/tiny/codec --device cpu --text "Hello from the GPU." --force-audio --max-new-tokens 80 --seed 1 --temperature 0 --out $OUT/tiny_cpu.wav 2>&1 | tail -1
echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s, max rss %M KB" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -2
echo "== bench-step full bf16"; timeout 200 $B dev bench-step --model /tmp/full/model --device cuda --dtype bf16 --batch 1,8,32,64 --context 256 --steps 20 --json 2>&1 | tee $OUT/bench_step_full_bf16.jsonl | tail -8
nvidia-smi --query-gpu=memory.used --format=csv
echo "== engine bench full bf16"; timeout 240 $B bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16 --concurrency 1,8,32 --frames 100 --json $OUT/bench_engine_full_bf16.json 2>&1 | tail -8
