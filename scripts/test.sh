#!/usr/bin/env bash
# The test command: sets up the virtualenv if needed, then runs the whole pytest suite on
# $SP_TEST_WORKERS processes (pytest-xdist, default 2: most tests wait on compilation, subprocesses
# or I/O). Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/model -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
exec "${SP_VENV:-.venv}/bin/python" -m pytest -n "${SP_TEST_WORKERS:-2}" "$@"
