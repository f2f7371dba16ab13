#!/usr/bin/env bash
# Device call (2026-12-08): the codec's stride-1 convs through the column kernel + one GEMM
# (`HIGGS_CODEC_CONV=fused`) against candle's conv1d (`generic`), same binary, same call:
# window-decode profiles, the same codes decoded both ways (audio SNR), then the GPU suite with
# `HIGGS_CODEC_CONV=fused` for every command (its gate to become the default), then engine levels
# with layer-wise streaming (`HIGGS_CODEC_STREAMING=layers`, fused convs) and with `generic` for
# the same-call comparison; also layer-wise streaming steps (`bench-codec --layer-streaming`)
# against the windows. Carry: .gpu (scripts/gpu-pack.sh suite).
# Results: $OUT/res.tar.xz + console.
set -u
SECONDS=0
LIMIT=${LIMIT:-600}
RES=/tmp/res; rm -rf $RES; mkdir -p $RES
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
mkdir -p /tmp/gpu; xz -dc .gpu/higgs-serve.xz > /tmp/gpu/higgs-serve; chmod +x /tmp/gpu/higgs-serve
B=/tmp/gpu/higgs-serve
[ -f /tmp/full/codec/config.json ] || $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $RES/nvidia-smi.txt
C=/tmp/full/codec
M="--model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== codec window decode (full-size random codec)"
prof() { # NAME ENV...
  local name=$1; shift
  env "$@" timeout 60 $B dev bench-codec --codec $C --device cuda --batch 1,4,32 --new-frames 4 --runs 5 --json > $RES/codec_$name.jsonl 2> $RES/codec_$name.err
  env "$@" timeout 90 $B dev bench-codec --codec $C --device cuda --batch 1,32,256 --new-frames 25 --runs 5 --profile --json >> $RES/codec_$name.jsonl 2>> $RES/codec_$name.err
  python3 - "$name" $RES/codec_$name.jsonl <<'PY'
import json, sys
for l in open(sys.argv[2]):
    if not l.startswith("{"): continue
    d = json.loads(l); p = d.get("profile_ms") or {}; t = d.get("profile_total_ms") or 1
    ops = " ".join(f"{k}={v['ms']:.1f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]["ms"]))
    print(f"{sys.argv[1]:12} b={d['batch']:3} new={d['new_frames']:3} decode {d['decode_ms']:8.2f} ms {d['audio_s_per_s']:8.1f} audio-s/s" + (f" | synced {t:.1f} ms: {ops}" if p else ""))
PY
  tail -2 $RES/codec_$name.err | grep -i error
}
steps() { # NAME ENV... : layer-wise streaming steps (no context frames), same batches
  local name=$1; shift
  { env "$@" timeout 60 $B dev bench-codec --codec $C --device cuda --batch 1,4,32 --new-frames 4 --runs 5 --layer-streaming --json
    env "$@" timeout 60 $B dev bench-codec --codec $C --device cuda --batch 1,32,256 --new-frames 25 --runs 5 --layer-streaming --json
  } > $RES/steps_$name.jsonl 2> $RES/steps_$name.err
  python3 - "$name" $RES/steps_$name.jsonl <<'PY'
import json, sys
for l in open(sys.argv[2]):
    if l.startswith("{"):
        d = json.loads(l); print(f"steps {sys.argv[1]:12} b={d['batch']:3} new={d['new_frames']:3} step {d['decode_ms']:8.2f} ms {d['audio_s_per_s']:8.1f} audio-s/s")
PY
  tail -2 $RES/steps_$name.err | grep -i error
}
prof f32_generic HIGGS_CODEC_CONV=generic
prof f32_fused HIGGS_CODEC_CONV=fused
steps f32_fused HIGGS_CODEC_CONV=fused
echo "== same codes decoded both ways"
for n in generic fused; do
  HIGGS_CODEC_CONV=$n timeout 60 $B synth $M --text "Same codes, two convolution paths." --force-audio --max-new-tokens 120 --seed 3 --out $RES/synth_$n.wav > $RES/synth_$n.log 2>&1; echo "synth $n rc=$?"
done
python3 - $RES/synth_generic.wav $RES/synth_fused.wav <<'PY' | tee $RES/audio_compare.txt
import sys, wave, struct, math
def rd(p):
    w = wave.open(p); n = w.getnframes(); return struct.unpack("<%dh" % n, w.readframes(n))
try:
    a, b = rd(sys.argv[1]), rd(sys.argv[2]); n = min(len(a), len(b))
    d = [a[i] - b[i] for i in range(n)]; s = sum(x * x for x in a[:n]) or 1; e = sum(x * x for x in d) or 1e-9
    print(f"fused vs generic audio: {len(a)}/{len(b)} samples, max|d| {max(map(abs, d))} LSB, SNR {10 * math.log10(s / e):.1f} dB")
except Exception as ex:
    print("audio compare failed:", ex)
PY
left=$((LIMIT - SECONDS - 180)); echo "== suite with HIGGS_CODEC_CONV=fused, ${left}s left"
HIGGS_CODEC_CONV=fused OUT=$RES GPU_SUITE_SKIP_FUSED=1 timeout $left bash scripts/gpu-suite.sh > $RES/suite_console.txt 2>&1
grep -E "^==|REGRESSION|^ok|http/engine|FAILED|panicked|test result|baseline|concurrency|^skip" $RES/suite_console.txt | cut -c1-220
left=$((LIMIT - SECONDS - 15)); echo "== engine with HIGGS_CODEC_CONV=fused HIGGS_CODEC_STREAMING=layers, ${left}s left"
[ $left -gt 40 ] && HIGGS_CODEC_CONV=fused HIGGS_CODEC_STREAMING=layers timeout $((left < 90 ? left : 90)) $B bench $M --concurrency 1,32,256 --frames 250 --json $RES/engine_layers.json 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-220
left=$((LIMIT - SECONDS - 15)); echo "== engine with HIGGS_CODEC_CONV=generic, ${left}s left"
[ $left -gt 40 ] && HIGGS_CODEC_CONV=generic timeout $left $B bench $M --concurrency 1,32,256 --frames 250 --json $RES/engine_generic.json 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-220
cd /tmp && tar -cJf "$OUT/res.tar.xz" res && ls -la "$OUT"
