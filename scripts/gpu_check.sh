#!/usr/bin/env bash
# The prepared accelerator check (issue 13): T5-small, batch 128, 512/512, bf16 activations —
# steps/s, tokens/s, MFU and memory of the cuDNN and XLA attention paths, one bf16 step vs
# float32, cuDNN vs XLA gradients. Runs in a few minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh [--json FILE] [--smoke] [--variants …]   (--help for all options)
#
# Needs only jax (with its CUDA plugin on a GPU), flax, optax, numpy and gin-config: no
# TensorFlow, SeqIO or Orbax. Uses .venv/bin/python when it exists and imports jax, else
# $PYTHON or python3 (a bare GPU machine: `pip install gin-config==0.5.0` first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import jax" 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY=python3
  fi
fi
for module in jax flax optax numpy gin; do
  if ! "$PY" -c "import $module" 2>/dev/null; then
    package=$module; [ "$module" = gin ] && package="gin-config==0.5.0"
    echo "gpu_check: $PY cannot import $module; install it first ($PY -m pip install $package)" >&2
    exit 2
  fi
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m synthetic_pretraining.gpu_check "$@"
