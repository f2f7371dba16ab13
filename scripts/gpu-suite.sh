#!/usr/bin/env bash
# GPU suite (issue #12): run on the GPU host from the repository root, next to the cuda build.
# Needs beside it (carried, xz-compressed, git-ignored): .gpu/higgs-serve.xz (the cuda build of
# higgs-serve), the cuda test binaries .gpu/t_*.xz, fixture sets .gpu/fixtures-*.tar.xz and
# .gpu/commit (see docs/BENCHMARKS.md "GPU suite"; scripts/gpu-pack.sh makes them).
# Writes $OUT/suite.json (or docs/bench/gpu-suite/<date>-<commit>.json without $OUT) with a
# `summary` object and the raw levels, and compares the summary with
# docs/bench/gpu-suite/baseline.json (baseline-h100.json on an H100, GPU_SUITE_BASELINE=FILE to
# choose): any figure more than 10 % worse prints REGRESSION.
# Finishes inside 9 minutes (every step has its own timeout).
set -u
ROOT=$(pwd)
DEST=${OUT:-$ROOT/docs/bench/gpu-suite}
# .gpu/commit (written with the build) names the commit built; the device copy's git HEAD may not.
COMMIT=$(cat .gpu/commit 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
NAME="$(date -u +%Y-%m-%d)-$COMMIT"
RAW=$DEST/raw; mkdir -p "$RAW"
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
chmod +x $W/*
B=$W/higgs-serve
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$RAW/nvidia-smi.txt"
echo "== 1. f32 CUDA correctness"
# Fixture sets travel as .gpu/fixtures-NAME.tar.xz (tar of ../shared/fixtures/NAME); the binary and
# all of them exceed one call's 64 MiB carry, so a test runs only when its fixtures came along
# (GPU_SUITE_TESTS_ONLY=1: a call that runs only this step, e.g. with the llm fixtures).
FIX=$W/fixtures; mkdir -p $FIX
for f in .gpu/fixtures-*.tar.xz; do [ -f "$f" ] && tar -xJf "$f" -C $FIX; done
needs() { case "$1" in
  t_model_parity|t_engine_generation_parity) echo "llm text-tokenizer prompts" ;;
  t_codec_parity|t_codec_streaming|t_codec_decoder_dtype) echo "codec" ;;
  *) echo "" ;; esac; }
: > "$RAW/cuda_tests.txt"
for t in $W/t_*; do
  name=$(basename "$t"); missing=""
  for n in $(needs "$name"); do [ -d "$FIX/$n" ] || missing="$missing $n"; done
  if [ -n "$missing" ]; then echo "skip $name (fixtures not carried:$missing)" | tee -a "$RAW/cuda_tests.txt"; continue; fi
  echo "== $name" | tee -a "$RAW/cuda_tests.txt"
  HIGGS_TEST_DEVICE=cuda HIGGS_FIXTURES=$FIX timeout 150 "$t" --test-threads=1 2>&1 \
    | grep -E "^test |test result|panicked|^called |^assertion|^  (left|right):|rror" | cut -c1-600 | tee -a "$RAW/cuda_tests.txt"
done
if [ "${GPU_SUITE_TESTS_ONLY:-0}" = 1 ]; then exit 0; fi
if [ ! -f /tmp/full/model/config.json ]; then
  $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
M="--model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== 2. engine levels (250 frames, default sampling) and the decode step"
timeout 130 $B bench $M --concurrency 1,32,256 --frames 250 --json "$RAW/engine.json" 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-300
# A/B of the fused sampling kernel (off by default until this suite shows it is no worse).
# GPU_SUITE_SKIP_FUSED=1 leaves it out (a same-call A/B of two builds that needs the time).
[ "${GPU_SUITE_SKIP_FUSED:-0}" = 1 ] || HIGGS_DEVICE_SAMPLER=fused timeout 120 $B bench $M --concurrency 1,32,256 --frames 250 --json "$RAW/engine_fused.json" 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-300
# synth drives a one-slot engine: one real run on the GPU.
timeout 90 $B synth $M --text "The GPU suite checks synth end to end." --force-audio --max-new-tokens 150 --seed 1 --out /tmp/synth.wav > "$RAW/synth.log" 2>&1; echo "synth rc=$?"; tail -1 "$RAW/synth.log"
# The HTTP soak's own workload in-process (bench --mix: ends by EOS, mixed lengths, a library
# voice for a third, client cancellations), the engine figure the HTTP door is compared with.
timeout 150 $B bench $M --mix --voices voices --voice belinda --concurrency 1,16,64,256 --frames 250 --json "$RAW/engine_mix.json" 2>&1 | grep -E "concurrency|failed|rror" | cut -c1-300
timeout 60 $B dev bench-step --model /tmp/full/model --device cuda --dtype bf16 --batch 1,256 --context 256 --steps 20 --json > "$RAW/step.jsonl" 2>/dev/null; cat "$RAW/step.jsonl" | cut -c1-200
echo "== 3. HTTP soak (no ignore_eos; streams end by EOS or length)"
PORT=18731
$B serve $M --host 127.0.0.1 --port $PORT --max-running 256 --max-seq-len 1024 --max-queue 1024 --voices voices --no-download > "$RAW/serve.log" 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 1; done
timeout 170 $B bench --url "http://127.0.0.1:$PORT" --voice belinda --concurrency 1,16,64,256 --frames 250 --json "$RAW/http.json" 2> "$RAW/http_client.log" | cut -c1-400
curl -s "http://127.0.0.1:$PORT/metrics" > "$RAW/metrics.txt"
kill $SRV; wait $SRV 2>/dev/null
echo "== 4. summary"
# The baseline of this card type when there is one (baseline-h100.json on an H100: cards differ by
# their memory bandwidth, so an H100 run against the H200 baseline reads as a regression).
BASE=$ROOT/docs/bench/gpu-suite/baseline.json
case "$(cat "$RAW/nvidia-smi.txt")" in *H100*) CARD=h100 ;; *H200*) CARD=h200 ;; *) CARD=other ;; esac
[ -f "$ROOT/docs/bench/gpu-suite/baseline-$CARD.json" ] && BASE=$ROOT/docs/bench/gpu-suite/baseline-$CARD.json
BASE=${GPU_SUITE_BASELINE:-$BASE}
echo "baseline: $BASE"
python3 - "$RAW" "$DEST/$NAME.json" "$BASE" <<'PY'
import json, os, re, sys
raw, out, base = sys.argv[1:4]
def load(n):
    try: return json.load(open(os.path.join(raw, n)))
    except Exception: return None
eng, fused, mix, http = load("engine.json"), load("engine_fused.json"), load("engine_mix.json"), load("http.json")
lv = lambda d, c: next((l for l in (d or {}).get("levels", []) if l["concurrency"] == c), {})
steps = [json.loads(l) for l in open(os.path.join(raw, "step.jsonl")) if l.strip().startswith("{")]
step = lambda b: next((s.get("step_ms") for s in steps if s.get("batch") == b), None)
hl = (http or {}).get("levels", [])
failed_client = sum(l.get("failed_streams", 0) for l in hl)
rejected = sum(sum(l.get("refused_by_status", {}).values()) for l in hl)
metrics = open(os.path.join(raw, "metrics.txt")).read()
m = re.search(r'higgs_requests_total\{outcome="failed"\}\s+([0-9.]+)', metrics)
failed_server = float(m.group(1)) if m else 0.0
tests = open(os.path.join(raw, "cuda_tests.txt")).read()
summary = {
  "cuda_tests_failed": len(re.findall(r"^test .* FAILED", tests, re.M)) + len(re.findall("panicked", tests)),
  "http_failed_streams": failed_client,
  "http_no_audio_streams": sum(l.get("no_audio_streams", 0) for l in hl),
  "http_failed_requests_server": failed_server,
  "http_refused_requests": rejected,
  "engine_c1_frames_per_s": lv(eng, 1).get("per_stream_frames_per_s_mean"),
  "engine_c1_ttfa_p50_ms": lv(eng, 1).get("ttfa_p50_ms"),
  "engine_c32_ttfa_p50_ms": lv(eng, 32).get("ttfa_p50_ms"),
  "engine_c32_audio_s_per_s": lv(eng, 32).get("audio_s_per_s"),
  "engine_c256_audio_s_per_s": lv(eng, 256).get("audio_s_per_s"),
  "engine_c256_ttfa_p50_ms": lv(eng, 256).get("ttfa_p50_ms"),
  "engine_fused_c1_frames_per_s": lv(fused, 1).get("per_stream_frames_per_s_mean"),
  "engine_fused_c32_ttfa_p50_ms": lv(fused, 32).get("ttfa_p50_ms"),
  "engine_fused_c256_audio_s_per_s": lv(fused, 256).get("audio_s_per_s"),
  "synth_ok": int("wrote " in open(os.path.join(raw, "synth.log")).read()) if os.path.exists(os.path.join(raw, "synth.log")) else 0,
  "engine_mix_c16_audio_s_per_s": lv(mix, 16).get("audio_s_per_s"),
  "engine_mix_c64_audio_s_per_s": lv(mix, 64).get("audio_s_per_s"),
  "engine_mix_c256_audio_s_per_s": lv(mix, 256).get("audio_s_per_s"),
  "http_c1_ttfa_p50_ms": lv(http, 1).get("ttfa_p50_ms"),
  "http_c16_audio_s_per_s": lv(http, 16).get("audio_s_per_s"),
  "http_c64_audio_s_per_s": lv(http, 64).get("audio_s_per_s"),
  "http_c64_ttfa_p50_ms": lv(http, 64).get("ttfa_p50_ms"),
  "http_c256_audio_s_per_s": lv(http, 256).get("audio_s_per_s"),
  "step_b1_ms": step(1), "step_b256_ms": step(256),
}
doc = {"summary": summary, "engine": eng, "engine_fused": fused, "engine_mix": mix, "http": http, "step": steps,
       "gpu": open(os.path.join(raw, "nvidia-smi.txt")).read().strip()}
json.dump(doc, open(out, "w"), indent=1)
print(json.dumps(summary, indent=1))
# Lower is better for times and failures; higher for rates.
lower = lambda k: k.endswith("_ms") or "failed" in k or "refused" in k
if os.path.exists(base):
    b = json.load(open(base))["summary"]
    for k, v in summary.items():
        if v is None or b.get(k) is None: continue
        if b[k] == 0:
            if not lower(k): continue
            worse = v > 0  # a count that was 0 must stay 0
        else:
            worse = (v > b[k] * 1.1) if lower(k) else (v < b[k] * 0.9)
        print(("REGRESSION " if worse else "ok         ") + f"{k}: {v:.4g} (baseline {b[k]:.4g})")
else:
    print("no baseline.json yet: copy this run's JSON to docs/bench/gpu-suite/baseline.json")
# The HTTP door against the engine alone on the same workload (target: within 10 %).
for c in (1, 16, 64, 256):
    h, e = lv(http, c).get("audio_s_per_s"), lv(mix, c).get("audio_s_per_s")
    if h and e: print(f"http/engine (same workload) c={c}: {h:.4g} / {e:.4g} = {h / e:.3f}")
# In-run A/B: the fused sampler against the default (ops) on the same GPU, same run.
for k in ("c1_frames_per_s", "c32_ttfa_p50_ms", "c256_audio_s_per_s"):
    a, f = summary.get("engine_" + k), summary.get("engine_fused_" + k)
    if a and f: print(f"fused/ops {k}: {f:.4g} / {a:.4g} = {f / a:.3f}")
PY
