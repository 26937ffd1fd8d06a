#!/usr/bin/env bash
# Creates the virtualenv (.venv, or $SP_VENV) and installs the pinned dependencies if missing.
# Idempotent: does nothing when requirements.lock, setup.py and the C kernels (_native.c) are
# unchanged since the last install (the editable install builds _native in place).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SP_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
want="$(cat requirements.lock setup.py synthetic_pretraining/generators/_native.c | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtualenv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.sp-installed" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing pinned dependencies (requirements.lock) into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.lock
  # t5's declared dependencies would replace seqio/tfds with stale nightlies: install it alone.
  "$VENV/bin/python" -m pip install -q --no-deps t5==0.9.4
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$VENV/.sp-installed"
fi
