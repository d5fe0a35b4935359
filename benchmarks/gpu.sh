#!/usr/bin/env bash
# The GPU checks of issue 6, for a session lent a CUDA machine: the requires_cuda tests, then
# every benchmark table on the GPU. Installs nothing (the machine has no network): it uses the
# python on PATH (or $PYTHON), which must have torch with CUDA, numpy, xarray and scikit-learn;
# captum, dask and zarr are optional (their rows are skipped with the reason).
#
#   OUT=/some/dir bash benchmarks/gpu.sh     # about 5 minutes at most
#
# Writes $OUT/env.txt, $OUT/pytest-cuda.txt, $OUT/bench.txt and $OUT/bench.json (the JSON is
# rewritten after every group, so a run cut short keeps the tables it finished).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MPLBACKEND=Agg PYTHONWARNINGS=ignore

"$PY" - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0))
for name in ("numpy", "xarray", "sklearn", "captum", "dask", "zarr", "torchvision", "pytest"):
    try:
        print(f"{name:12s}", getattr(importlib.import_module(name), "__version__", "?"))
    except ImportError as err:
        print(f"{name:12s} missing ({err})")
EOF
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "CUDA is not available to $PY: nothing to run on a GPU here." | tee -a "$OUT/env.txt"
    exit 0
fi

status=0
if "$PY" -c 'import pytest' 2>/dev/null; then
    # -o addopts= drops --doctest-modules: only the marked tests, from tests/
    timeout 90 "$PY" -m pytest -m requires_cuda -q -o addopts= -p no:cacheprovider tests \
        2>&1 | tee "$OUT/pytest-cuda.txt"
    rc=${PIPESTATUS[0]}
    # tests/test_cuda.py: CPU against CUDA results, model state, autocast error, no host syncs
    # per batch (5 would mean no test was collected)
    if [ "$rc" -ne 0 ]; then status=$rc; fi
else
    echo "pytest is not installed: requires_cuda tests not run" | tee "$OUT/pytest-cuda.txt"
fi

timeout 240 "$PY" -m benchmarks --device cuda --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ]; then
    echo "benchmarks stopped at 240 s; $OUT/bench.json holds the groups that finished" \
        | tee -a "$OUT/bench.txt"
elif [ "$rc" -ne 0 ]; then
    status=$rc
fi
echo "results in $OUT"
exit "$status"
