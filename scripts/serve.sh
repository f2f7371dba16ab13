#!/usr/bin/env bash
# The README's run command: installs the build prerequisites when they are missing
# (scripts/install-build-deps.sh), then builds and runs the release binary with your arguments.
#   scripts/serve.sh serve --demo                          # the whole stack on random weights
#   scripts/serve.sh serve --model DIR/model --codec DIR/codec --voices voices
# Any other command works too (scripts/serve.sh synth ..., scripts/serve.sh download --out DIR).
# CUDA: HIGGS_FEATURES=cuda scripts/serve.sh serve ... (needs the CUDA toolkit; docs/deploy-runpod.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-build-deps.sh
features=()
[ -n "${HIGGS_FEATURES:-}" ] && features=(--features "$HIGGS_FEATURES")
[ $# -eq 0 ] && set -- serve --demo
exec cargo run --release --locked -p higgs-serve "${features[@]}" -- "$@"
