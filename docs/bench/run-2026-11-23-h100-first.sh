#!/usr/bin/env bash
set -x
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
B=.gpu/higgs-serve
ldd $B | grep -i "not found"
nvidia-smi
$B dev make-checkpoint --preset tiny --out /tmp/tiny 2>&1 | tail -1
$B synth --model /tmp/tiny/model --codec /tmp/tiny/codec --device cuda --dtype f32 --text "Hello from the GPU." --force-audio --max-new-tokens 80 --seed 1 --out $OUT/tiny_gpu.wav 2>&1 | tail -2
$B synth --model /tmp/tiny/model --codec /tmp/tiny/codec --device cpu --text "Hello from the GPU." --force-audio --max-new-tokens 80 --seed 1 --out $OUT/tiny_cpu.wav 2>&1 | tail -2
cmp $OUT/tiny_gpu.wav $OUT/tiny_cpu.wav && echo "GPU f32 == CPU f32 output bytes" || echo "GPU and CPU outputs differ (expected small float differences)"
/usr/bin/time -v $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | grep -E "wrote|Elapsed|Maximum resident"
$B dev bench-step --model /tmp/full/model --device cuda --dtype bf16 --batch 1,8,32,64,128 --context 256 --steps 20 --json 2>&1 | tee $OUT/bench_step_full_bf16.jsonl
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv
