#!/usr/bin/env bash
# The GPU figures of issue 29 (item 6), in one call of at most 8 minutes on a lent GPU machine:
#   1. training throughput (benchmarks/train_throughput.py --device cuda) at batch 64 and 1024, at the CPU
#      recipe's width (128) and the paper's (300);
#   2. per-trial overhead with fractional GPUs (benchmarks/sweep_overhead.py --gpus-per-trial 0.25: four
#      trials share the GPU), where Ray and MLflow are installed on that machine;
#   3. time to law at paper scale for 2D spring (benchmarks/time_to_law.py: the L1 model, 300 units, trained
#      on the GPU, distilled with Operon on the machine's CPUs).
#
# Usage:
#   bash benchmarks/device.sh              # on the GPU machine; logs and JSON lines under $OUT (or runs/device)
#   bash benchmarks/device.sh --dry-run    # every step on CPU at the smallest sizes (CI: tests/e2e/test_device_script.py)
#
# The device machines of this project have torch, torch-geometric, pyarrow, PyYAML and matplotlib but not
# Ray, MLflow or pyoperon, and cannot reach a package index. So the script runs raysym from the checkout
# (PYTHONPATH), installs wheels carried in .whl/ (pyoperon: 1.5 MB) when that folder exists, simulates and
# distils without Ray when Ray is missing (time_to_law.py --engine local), and says plainly which step it
# skipped and why (the Ray wheel, 79 MB, is larger than what a call can carry).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "device.sh: unknown argument '$1' (use --dry-run, or nothing on the GPU machine)" >&2; exit 2 ;;
esac

OUT_DIR="${OUT:-runs/device}"
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d -t raysym-device-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"  # the caller's, where set (a joined Ray's)
PY=${PYTHON:-python3}

# raysym from this checkout when it is not installed (the GPU machine); carried wheels, if any.
if ! $PY -c "import raysym" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    && export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi
# installed or not, without importing it (MLflow's import alone takes 2 CPU s)
has() { $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  THROUGHPUT_ARGS=(--batch-sizes 64 --seconds 0.5 --sims 4)
  OVERHEAD_ARGS=(--smoke --gpus-per-trial 0)
  LAW_ARGS=(--sims 20 --l1-cap-min 0.05 --setting fast --samples 200 --hidden 16)
else
  DEVICE=cuda
  THROUGHPUT_ARGS=(--batch-sizes 64 1024 --seconds 8 --sims 200)
  OVERHEAD_ARGS=(--base 4 --extra 8 --gpus-per-trial 0.25)
  LAW_ARGS=(--sims 2000 --l1-cap-min 3 --setting thorough --samples 2000 --hidden 300)
fi

failed=0
step() {  # step NAME COMMAND...: run one part, its output to the console and $OUT_DIR/NAME.log
  local name=$1
  shift
  echo "== device.sh: $name ($(date -u +%H:%M:%S) UTC)"
  "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "== device.sh: $name FAILED (exit $rc)"
    failed=1
  fi
}

echo "== device.sh: $( [ "$DRY" = 1 ] && echo "dry run on CPU" || echo "on the GPU" ), results in $OUT_DIR"
$PY -c "import platform, torch; print('torch', torch.__version__, '| cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0), '| python', platform.python_version())"
if [ "$DRY" = 0 ] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "device.sh: no CUDA device here; use --dry-run on a machine without a GPU." >&2
  exit 2
fi

# both widths in one process: the data and torch-geometric's import (5 CPU s) once
step throughput $PY benchmarks/train_throughput.py --device "$DEVICE" --hidden 128 300 "${THROUGHPUT_ARGS[@]}"

if has ray && has mlflow; then
  step overhead $PY benchmarks/sweep_overhead.py "${OVERHEAD_ARGS[@]}" --results "$OUT_DIR/overhead.jsonl"
else
  echo "== device.sh: overhead SKIPPED: Ray and MLflow are not installed here (the Ray wheel, 79 MB, is over a call's carry limit)"
fi

if has pyoperon; then
  ENGINE=local  # the dry run takes the path the GPU machine takes (no Ray) even where Ray is installed
  [ "$DRY" = 0 ] && has ray && ENGINE=ray
  step time_to_law $PY benchmarks/time_to_law.py --systems spring --dims 2 --models l1 --device "$DEVICE" \
    --engine "$ENGINE" "${LAW_ARGS[@]}" --data-root "$WORK/data" --runs "$WORK/runs" \
    --results "$OUT_DIR/time_to_law.jsonl"
else
  echo "== device.sh: time_to_law SKIPPED: pyoperon is not installed (carry its wheel in .whl/, see the device notes)"
fi

echo "== device.sh: done ($( [ "$failed" = 0 ] && echo "every step that ran passed" || echo "a step FAILED" ))"
exit "$failed"
