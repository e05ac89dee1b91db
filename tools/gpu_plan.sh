#!/usr/bin/env bash
# The GPU plan's one device call (tools/gpu_plan.py's docstring is the how-to and the why):
#
#     bash tools/gpu_prepare.sh                                               # here, first
#     run(command="bash tools/gpu_plan.sh", carry=[".data"], timeout_s=570)   # then give_back()
#     .venv/bin/python tools/gpu_collect.py FILES_AT                          # here, after
#
# Arguments go to `tools/gpu_plan.py run`: --from-scratch trains fresh weights instead of fine-tuning
# checkpoints/capsnet_mnist.pt; --seconds (540) is the whole plan, counted from this script's start.
# Rehearsal on the CPU (tests/test_gpu_plan.py):
#
#     OUT=/tmp/o PYTHON=.venv/bin/python bash tools/gpu_plan.sh --tiny --data-root D --run-dir /tmp/r
set -uo pipefail
export PLAN_T0="${PLAN_T0:-$(date +%s.%N)}"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 2
: "${OUT:?OUT must name the folder whose files come back}"
exec "${PYTHON:-python3}" tools/gpu_plan.py run "$@"
