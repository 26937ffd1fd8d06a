#!/usr/bin/env bash
# Creates the virtualenv (.venv, or $SP_VENV) and installs the pinned dependencies if missing.
# Idempotent: does nothing when requirements.lock, setup.py and the C kernels (_native.c) are
# unchanged since the last install (the editable install builds _native in place).
#
# SP_ACCEL selects the accelerator build of jax (default: cpu, jax's CPU build only):
#   SP_ACCEL=cuda bash scripts/setup.sh   + requirements-cuda.lock (jax's CUDA 12 plugin, cuDNN)
#   SP_ACCEL=tpu  bash scripts/setup.sh   + requirements-tpu.lock  (libtpu, on a Cloud TPU VM)
# Check: .venv/bin/python -c "import jax; print(jax.devices())"  (GPU: CudaDevice, TPU: TpuDevice)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SP_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
ACCEL="${SP_ACCEL:-cpu}"
case "$ACCEL" in
  cpu) extra_lock="" ;;
  cuda) extra_lock=requirements-cuda.lock ;;
  tpu) extra_lock=requirements-tpu.lock ;;
  *) echo "[setup] SP_ACCEL must be cpu, cuda or tpu, got '$ACCEL'" >&2; exit 2 ;;
esac
want="$(cat requirements.lock setup.py synthetic_pretraining/generators/_native.c | sha256sum | cut -c1-16)"
if [ -n "$extra_lock" ]; then
  want="$want-$ACCEL-$(sha256sum < "$extra_lock" | cut -c1-16)"
fi
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
  if [ -n "$extra_lock" ]; then
    echo "[setup] installing the $ACCEL extras ($extra_lock) into $VENV"
    "$VENV/bin/python" -m pip install -q --no-deps -r "$extra_lock"
  fi
  echo "$want" > "$VENV/.sp-installed"
fi
