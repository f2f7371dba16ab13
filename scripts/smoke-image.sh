#!/usr/bin/env bash
# Smoke test of the RunPod image (docs/deploy-runpod.md "Building the image without Docker"). Run by
# scripts/test.sh after the e2e tests. It
#   1. builds the image with scripts/build-image.sh from a binary (default target/debug/higgs-serve,
#      which `cargo test` has just built; HIGGS_SMOKE_BIN=target-cuda/release/higgs-serve for the
#      CUDA build RunPod needs), or takes a built archive (HIGGS_SMOKE_IMAGE=FILE.oci.tar);
#   2. checks its config against the Dockerfile (entrypoint, cmd, workdir, port, env, user, voices);
#   3. loads it with podman into a private, throwaway store and starts it as the non-root user
#      (uid 10001): the loader must resolve every shared library of the binary (a CUDA build gets a
#      stand-in libcuda.so.1 mounted where the NVIDIA toolkit mounts the driver, as there is no GPU
#      here), no build tools, `--version` = the image's revision label; then
#      `runpod --rp-serve-api --demo --device cpu` with the image's own /app/voices: GET /health,
#      one /runsync job with a voice, one /v1/audio/speech through the OpenAI passthrough, a
#      `--test-input` run in a second container; then SIGTERM (podman stop) and a clean exit.
# Needs root (mmdebstrap, podman's rootful store), podman + runc (scripts/install-test-deps.sh).
# HIGGS_IMAGE_SMOKE=0 skips it (says so).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HIGGS_IMAGE_SMOKE:-1}" = 0 ]; then echo "image smoke test: skipped (HIGGS_IMAGE_SMOKE=0)"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "image smoke test: needs root (mmdebstrap root mode, rootful podman); HIGGS_IMAGE_SMOKE=0 skips it" >&2; exit 1; }
T0=$SECONDS
step() { echo "image smoke [$((SECONDS - T0)) s]: $*"; }
BIN=${HIGGS_SMOKE_BIN:-target/debug/higgs-serve}
IMAGE=${HIGGS_SMOKE_IMAGE:-}
PORT=${HIGGS_SMOKE_PORT:-18767}
mkdir -p target
WORK=$(mktemp -d "$PWD/target/.image-smoke-XXXXXX")
NAME="higgs-smoke-$$"
P=(podman --root "$WORK/store" --runroot "$WORK/run" --storage-driver overlay --cgroup-manager cgroupfs
   --events-backend none)
cleanup() {
  "${P[@]}" rm -f -t 0 "$NAME" "$NAME-ti" >/dev/null 2>&1 || true
  "${P[@]}" rmi -af >/dev/null 2>&1 || true
  umount -R "$WORK/store/overlay" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "$IMAGE" ]; then
  [ -x "$BIN" ] || cargo build -p higgs-serve
  IMAGE="$WORK/image.oci.tar"
  step "building the image from $BIN"
  bash scripts/build-image.sh --bin "$BIN" --out "$IMAGE" --tag localhost/higgs-serve-smoke:test
fi
step "checking the image's layout against the Dockerfile"
python3 scripts/image/check-layout.py "$IMAGE" Dockerfile

step "podman load"
REF="$("${P[@]}" load -q -i "$IMAGE" | sed -n 's/^Loaded image[^:]*: *//p' | tail -1)"
[ -n "$REF" ] || { echo "podman load printed no image name" >&2; exit 1; }
REVISION="$("${P[@]}" image inspect -f '{{index .Labels "org.opencontainers.image.revision"}}' "$REF")"

# The OCI runtime and limits that work here: podman's default rlimits (nofile 1048576) need
# CAP_SYS_RESOURCE, which sandboxed machines (VMs, CI runners) may lack, so pass the current ones;
# crun refuses cgroup v1 "hybrid" hosts, runc does not. Host network: no CNI/netavark needed.
LIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
RUNTIME=()
for rt in "" runc crun; do
  opt=(); [ -n "$rt" ] && opt=(--runtime "$rt")
  if "${P[@]}" "${opt[@]}" run --rm --network host "${LIMITS[@]}" --entrypoint /bin/true "$REF" >/dev/null 2>>"$WORK/rt.err"; then
    RUNTIME=("${opt[@]}"); ok=1; break
  fi
  ok=0
done
[ "$ok" = 1 ] || { cat "$WORK/rt.err" >&2; echo "podman cannot start a container here (tried the default runtime, runc, crun)" >&2; exit 1; }
MOUNTS=()
STUB="$WORK/nvidia-lib64"
"${P[@]}" "${RUNTIME[@]}" run --rm --network host "${LIMITS[@]}" --entrypoint /bin/cat "$REF" /usr/local/bin/higgs-serve > "$WORK/bin"
bash scripts/image/libcuda-stub.sh "$WORK/bin" "$STUB"
if [ -f "$STUB/libcuda.so.1" ]; then
  echo "CUDA build: mounting a stand-in libcuda.so.1 (every driver call returns CUDA_ERROR_NO_DEVICE) at /usr/local/nvidia/lib64"
  MOUNTS=(-v "$STUB:/usr/local/nvidia/lib64:ro")
fi
RUN=("${P[@]}" "${RUNTIME[@]}" run --network host --user 10001:10001 "${LIMITS[@]}" "${MOUNTS[@]}")
step "containers start (runtime: $("${P[@]}" "${RUNTIME[@]}" info -f '{{.Host.OCIRuntime.Name}}'), user 10001)"

# Every shared library resolves (what a missing CUDA library would break): glibc's loader in the image.
libs="$("${RUN[@]}" --rm --entrypoint /lib64/ld-linux-x86-64.so.2 "$REF" --list /usr/local/bin/higgs-serve 2>&1)" \
  && ! echo "$libs" | grep -q -E 'not found|cannot open' \
  || { echo "$libs" >&2; echo "the image lacks shared libraries of higgs-serve" >&2; exit 1; }
echo "$libs" | sed 's/^/  /'
tools="$("${RUN[@]}" --rm --entrypoint /bin/sh "$REF" -c \
  'id -u; for t in cc gcc c++ make ld as cargo rustc apt-get; do command -v $t || true; done')"
[ "$(echo "$tools" | head -1)" = 10001 ] || { echo "not running as uid 10001: $tools" >&2; exit 1; }
[ -z "$(echo "$tools" | tail -n +2)" ] || { echo "build tools in the image: $tools" >&2; exit 1; }
version="$("${RUN[@]}" --rm "$REF" --version)"
echo "  $version"
case "$version" in "higgs-serve "*"($REVISION)") ;; *) echo "--version does not name the image's revision $REVISION" >&2; exit 1 ;; esac

step "starting runpod --rp-serve-api --demo"
"${RUN[@]}" -d --name "$NAME" "$REF" runpod --rp-serve-api --demo --device cpu --host 127.0.0.1 --port "$PORT" \
  --max-seq-len 1024 --concurrency 2 >/dev/null
up=0
for _ in $(seq 1 240); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ]; then up=1; break; fi
  [ "$("${P[@]}" inspect -f '{{.State.Running}}' "$NAME")" = true ] || break
  sleep 0.5
done
[ "$up" = 1 ] || { "${P[@]}" logs "$NAME" 2>&1 | tail -40; echo "the container's test API did not come up" >&2; exit 1; }
step "test API up"
curl -sf "http://127.0.0.1:$PORT/health" > "$WORK/health.json"
curl -sf -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/runsync" -d \
  '{"input": {"transcript": "The image works.", "ref_audio": "belinda", "temperature": 0, "max_new_tokens": 30}}' \
  > "$WORK/runsync.json"
curl -sf -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/runsync" -d \
  '{"input": {"openai_route": "/v1/audio/speech", "openai_input": {"model": "tts-1", "input": "Speech.",
    "voice": "en_man", "response_format": "wav", "temperature": 0, "max_new_tokens": 30}}}' > "$WORK/speech.json"
python3 - "$WORK" <<'EOF'
import base64, json, sys
w = sys.argv[1]
h = json.load(open(f"{w}/health.json"))
assert h["workers"]["unhealthy"] == 0, h
r = json.load(open(f"{w}/runsync.json"))
assert r["status"] == "COMPLETED" and r["output"]["success"], r
o = r["output"]
wav = base64.b64decode(o["audio_base64"])
assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and o["metadata"]["voice_clone"], (wav[:12], o["metadata"])
print(f"  /runsync (voice belinda): {len(wav)} bytes of WAV, {o['duration_seconds']} s")
s = json.load(open(f"{w}/speech.json"))
assert s["status"] == "COMPLETED", s
a = base64.b64decode(s["output"]["data_b64"])
assert s["output"]["content_type"] == "audio/wav" and a[:4] == b"RIFF" and len(a) == s["output"]["size_bytes"], s["output"].keys()
print(f"  /v1/audio/speech (voice en_man, via openai_route): {len(a)} bytes of WAV")
EOF
step "--test-input in a second container"
"${RUN[@]}" --rm --name "$NAME-ti" "$REF" runpod --demo --device cpu --max-seq-len 1024 \
  --test-input '{"input": {"transcript": "One job.", "ref_audio": "belinda", "max_new_tokens": 20}}' > "$WORK/ti.log" 2>&1 \
  || { tail -30 "$WORK/ti.log"; echo "--test-input failed" >&2; exit 1; }
step "stopping (SIGTERM)"
"${P[@]}" stop -t 30 "$NAME" >/dev/null
code="$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$NAME")"
if [ "$code" != 0 ] || "${P[@]}" logs "$NAME" 2>&1 | grep -q 'panicked'; then
  "${P[@]}" logs "$NAME" 2>&1 | tail -30; echo "the container exited with $code" >&2; exit 1
fi
step "passed"
