#!/usr/bin/env bash
# The one test command: bash tests/run.sh [extra pytest args]
#
#   0. tests/tools/module_cycles.py: no import circle of more than a handful of modules
#   1. cargo build --workspace --all-targets, and cargo check of the test-only
#      fault-injection build the chaos runner's storage scenarios use
#   2. cargo test --workspace                      (stops at the first failing test binary)
#   3. real-client tests: pytest tests/python, run from the virtualenv .venv (created or
#      reused; requirements from tests/python/requirements.txt) against the debug binary
#      target/debug/spate, or $SPATE_BIN if set.
#
# Exits non-zero on any failure, and when pytest collected no test at all.
# SPATE_SKIP_CARGO=1 skips steps 1-2 (for iterating on the Python tests only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "import circles: python3 tests/tools/module_cycles.py"
python3 "$ROOT/tests/tools/module_cycles.py"

if [ "${SPATE_SKIP_CARGO:-0}" != "1" ]; then
  step "cargo build --workspace --all-targets"
  cargo build --workspace --all-targets
  step "cargo check -p spate --features fault-injection"
  cargo check -p spate --features fault-injection
  step "cargo test --workspace"
  cargo test --workspace
fi

step "python virtualenv .venv"
VENV="$ROOT/.venv"
REQ="$ROOT/tests/python/requirements.txt"
PYTHON="${PYTHON:-python3}"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "error: '$PYTHON -m venv' failed; install the venv module" \
         "(Debian: apt-get install python3-venv)" >&2
    rm -rf "$VENV"
    exit 1
  fi
fi
stamp="$VENV/.spate-requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  echo "$want" >"$stamp"
fi
"$VENV/bin/python" -c 'import confluent_kafka, kafka, pytest; print("confluent-kafka", confluent_kafka.__version__, "(librdkafka", confluent_kafka.libversion()[0] + ")", "kafka-python", kafka.__version__, "pytest", pytest.__version__)'

export SPATE_BIN="${SPATE_BIN:-$ROOT/target/debug/spate}"
step "real-client tests: pytest tests/python (SPATE_BIN=$SPATE_BIN)"
if [ ! -x "$SPATE_BIN" ]; then
  echo "error: $SPATE_BIN is missing; build it with cargo build --bin spate" >&2
  exit 1
fi
mkdir -p "$ROOT/target"
rc=0
"$VENV/bin/python" -m pytest "$ROOT/tests/python" -q \
  --junitxml="$ROOT/target/pytest-junit.xml" "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
