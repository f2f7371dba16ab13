#!/usr/bin/env bash
# The project's test command (README). Installs what the tests need, then runs every test.
# Fixtures come from $HIGGS_FIXTURES (default ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# Deployment files: the Dockerfile lints clean (hadolint), the RunPod Hub files are well formed.
bash scripts/lint-dockerfile.sh
python3 scripts/check-runpod-hub.py
cargo test --workspace --locked "$@"
# Real clients (openai, curl, schemathesis) against a real server process.
bash scripts/e2e.sh
