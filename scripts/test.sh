#!/usr/bin/env bash
# The project's test command (README). Installs what the tests need, then runs every test.
# Fixtures come from $HIGGS_FIXTURES (default ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh clone gains nothing from incremental artefacts; they would double target/'s size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Disk is the scarce resource on small CI machines: say how much there is before and after.
df -h . | tail -n 1 | awk '{print "disk before tests: " $4 " free of " $2}'
bash scripts/install-test-deps.sh
# Deployment files: the Dockerfile lints clean (hadolint), the RunPod Hub files are well formed.
bash scripts/lint-dockerfile.sh
python3 scripts/check-runpod-hub.py
cargo test --workspace --locked "$@"
du -sh target 2>/dev/null | awk '{print "target/ after cargo test: " $1}'
df -h . | tail -n 1 | awk '{print "disk after cargo test: " $4 " free"}'
# Real clients (openai, curl, schemathesis) against a real server process.
bash scripts/e2e.sh
# The RunPod image, built daemonless from the binary above and started with podman (~1 min when cached).
bash scripts/smoke-image.sh
