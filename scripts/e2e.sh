#!/usr/bin/env bash
# End-to-end tests with REAL clients against a real `higgs-serve serve --demo` process: the official
# `openai` Python package, curl, and schemathesis over /openapi.json. Run by scripts/test.sh after
# `cargo test` (which builds target/debug/higgs-serve). Python deps live in .venv-e2e
# (installed by scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${HIGGS_BIN:-target/debug/higgs-serve}
PY=.venv-e2e/bin/python
[ -x "$BIN" ] || cargo build -p higgs-serve
PORT=${E2E_PORT:-18765}
WORK=$(mktemp -d)
RP=""
trap 'kill $SERVER $RP 2>/dev/null || true; wait $SERVER $RP 2>/dev/null || true; rm -rf "$WORK"' EXIT
FIXTURES=${HIGGS_FIXTURES:-../shared/fixtures}
mkdir -p "$WORK/voices"
for v in belinda en_man; do cp "$FIXTURES/../voices/$v.wav" "$FIXTURES/../voices/$v.txt" "$WORK/voices/"; done
"$BIN" serve --demo --host 127.0.0.1 --port "$PORT" --voices "$WORK/voices" --api-key e2e-key \
  --device cpu --max-seq-len 1024 --default-max-new-tokens 40 --max-new-tokens-limit 64 > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 120); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/ping")" = 200 ]; then break; fi
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/ping" > /dev/null || { cat "$WORK/server.log"; echo "server did not start"; exit 1; }
export HIGGS_E2E_URL="http://127.0.0.1:$PORT" HIGGS_E2E_KEY=e2e-key HIGGS_E2E_WORK="$WORK"
"$PY" -m pytest -q tests/e2e
# The web page at / in headless Chromium (DevTools protocol): loads, asks for the key on a 401, an
# upload appears in the voice list, a request streams and plays; screenshot in target/test-artefacts/.
WEB_START=$(date +%s)
HIGGS_WEB_VOICE_WAV="$FIXTURES/../voices/en_man.wav" timeout 120 "$PY" -m pytest -q tests/e2e_web || {
  tail -30 "$WORK/server.log"
  echo "FAILED: the web page browser test (tests/e2e_web); screenshot and Chromium log: target/test-artefacts/web-page*"
  exit 1
}
echo "web page browser test: $(( $(date +%s) - WEB_START )) s; screenshot target/test-artefacts/web-page.png"
# schemathesis: no 5xx and responses conforming to the published schema, on every operation.
.venv-e2e/bin/schemathesis run "http://127.0.0.1:$PORT/openapi.json" \
  --header "Authorization: Bearer e2e-key" --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-15}" --workers 2 --request-timeout 120 --no-color 2>&1 | tee "$WORK/schemathesis.log"

# The RunPod door: the official `runpod` client against the local test API of a real worker process.
RP_PORT=${E2E_RP_PORT:-18766}
# Its own voice folder: schemathesis above may have deleted or replaced voices in the server's.
mkdir -p "$WORK/rp-voices"
for v in belinda en_man; do cp "$FIXTURES/../voices/$v.wav" "$FIXTURES/../voices/$v.txt" "$WORK/rp-voices/"; done
"$BIN" runpod --rp-serve-api --demo --host 127.0.0.1 --port "$RP_PORT" --voices "$WORK/rp-voices" --api-key e2e-key \
  --device cpu --max-seq-len 1024 --concurrency 4 > "$WORK/runpod.log" 2>&1 &
RP=$!
for _ in $(seq 1 120); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer e2e-key' "http://127.0.0.1:$RP_PORT/health")" = 200 ]; then break; fi
  sleep 0.5
done
curl -sf -H 'Authorization: Bearer e2e-key' "http://127.0.0.1:$RP_PORT/health" > /dev/null || { cat "$WORK/runpod.log"; echo "runpod test API did not start"; exit 1; }
HIGGS_RP_URL="http://127.0.0.1:$RP_PORT" HIGGS_BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")" \
  "$PY" -m pytest -q tests/e2e_runpod || { tail -50 "$WORK/runpod.log"; exit 1; }
