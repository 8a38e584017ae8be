#!/usr/bin/env bash
# The prepared GPU check (issue 13): one JSON with the step table (fp32 / loop default / compiled, batch 4
# and 16), real-vs-bare loop ratios, the gpu profile's per-epoch times and the paper profile's projected
# wall time. Budget: <= 8 minutes on one H200. Usage: bash benchmarks/gpu_check.sh [OUTPUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${1:-${OUT:-.}/gpu_check.json}
timeout 480 "$PY" benchmarks/gpu_check.py --device "${DEVICE:-cuda}" --output "$OUT" ${GPU_CHECK_ARGS:-}
