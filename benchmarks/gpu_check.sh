#!/usr/bin/env bash
# The one-command GPU check: AR, SD, PipeSpec (both stages sharing the GPU) and PPSD on models built on the
# device, each output checked against the target's greedy tokens, the simulator's and the closed forms'
# predictions from a profile and traces taken there, against what was measured. Needs nothing but this
# repository and a Python with torch, transformers and accelerate (simpy travels as a wheel in
# benchmarks/wheels; gguf and the built-in target are not used).
#
#   bash benchmarks/gpu_check.sh                      # cuda:0, results in $OUT or results/gpu_check
#   bash benchmarks/gpu_check.sh --device cpu --quick # the same path on the CPU, small models (the test)
#
# Writes gpu_check.json (the validate document with the check's verdict) and gpu_check.md (its table) to the
# output folder; exits 1 when a run was not lossless. PYTHON picks the interpreter (default: python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

# Run this tree's code whether or not it is installed: the package's layout (pyproject's package-dir) as links.
site="$(mktemp -d "${TMPDIR:-/tmp}/pipespec-check.XXXXXX")"
trap 'rm -rf "$site"' EXIT
mkdir "$site/pipespec"
for entry in "$repo"/pipespec/*; do ln -s "$entry" "$site/pipespec/"; done
for layer in theory sim backend validation figures; do ln -s "$repo/$layer" "$site/pipespec/$layer"; done
path="$site"
if ! "$python" -c "import simpy" 2>/dev/null; then
    for wheel in "$repo"/benchmarks/wheels/*.whl; do path="$path:$wheel"; done  # pure-Python wheels import as zips
fi
export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$repo/benchmarks/gpu_check.py" "$@"
