#!/usr/bin/env bash
# GPU check of the loss library (issue 8): on a machine with a CUDA GPU and PyTorch,
#   1. runs the loss tests on CUDA (COURSEKIT_TEST_DEVICE=cuda; tests that honour it move their tensors there;
#      the ecosystem comparisons, CPU-only and needing transformers and TRL, are left to make test),
#   2. runs benchmark 1 in bfloat16 at N=8192, H=2304, V=256000 against the plain expression and,
#      where importable, Liger-Kernel and Cut Cross-Entropy (bench/gpu_chunked.py),
# and writes the table to bench/GPU_RESULTS.md and the end of bench/RESULTS.md. Under 5 minutes.
# Not part of `make test`. Usage: bench/gpu_check.sh [--tiny]   (PYTHON=... picks the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    for candidate in .venv/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
            echo "$candidate"; return
        fi
    done
    echo ""
}
PY="$(pick_python)"
if [[ -z "$PY" ]]; then
    echo "gpu_check: no Python with a CUDA-enabled torch found (set PYTHON=...)" >&2
    exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__)'

status=0
summary="not run (pytest or hypothesis not importable)"
if "$PY" -c 'import pytest, hypothesis' 2>/dev/null; then
    log="$(mktemp)"
    COURSEKIT_TEST_DEVICE=cuda timeout 170 "$PY" -m pytest tests/test_losses_*.py -q -rfE -p no:cacheprovider \
        -m "not slow and not ecosystem" -o addopts="" 2>&1 | tee "$log"
    test_status=${PIPESTATUS[0]}
    summary="$(grep -E '(passed|failed|error)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//')"
    # Name what failed, so that the recorded line says which test to look at.
    failing="$(grep -E '^(FAILED|ERROR) ' "$log" | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ *$//')"
    [[ -n "$failing" ]] && summary="${summary} (failing: ${failing})"
    [[ $test_status -eq 124 ]] && summary="timed out after 170 s: ${summary}"
    [[ $test_status -ne 0 ]] && status=1
    rm -f "$log"
fi
echo "gpu_check: tests: $summary"

timeout 120 "$PY" -m bench.gpu_chunked "$@" --tests-summary "$summary" || status=1
exit $status
