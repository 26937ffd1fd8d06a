#!/usr/bin/env bash
# The main job: sets up the virtualenv if needed, then runs the CPU mini-experiment
# (pre-train Set / Identity / natural, fine-tune on real downstream tasks, % of benefit table).
# Arguments go to `synthetic-pretraining mini` (e.g. --seeds 3, --out DIR, --gin.KNOB=VALUE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec "${SP_VENV:-.venv}/bin/synthetic-pretraining" mini "$@"
