#!/usr/bin/env bash
# The GPU smoke test (benchmarks/gpu_smoke.py says what it checks): one PASS/FAIL line per check, exit 1 when any
# fails, 1 in one line when there is no CUDA. `--device cpu` runs the same checks on the CPU (a dry run).
#   benchmarks/gpu_smoke.sh [--device cpu] [--max-ratio 2] [--keep DIR]
# $PYTHON picks the interpreter (default: the project's .venv). A run that hangs is stopped after $GPU_SMOKE_TIMEOUT_S
# seconds (default 300: the checks take under 3 minutes on one GPU) with a FAIL line.
set -u
cd "$(dirname "$0")/.." || exit 1
python=${PYTHON:-.venv/bin/python}
limit=${GPU_SMOKE_TIMEOUT_S:-300}
timeout --kill-after=10 "$limit" "$python" benchmarks/gpu_smoke.py "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "FAIL time: the smoke test ran past ${limit} s and was stopped"
    exit 1
fi
exit "$status"
