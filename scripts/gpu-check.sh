#!/usr/bin/env bash
# Builds and runs VedaRT's GPU checks on a machine with a CUDA device, in one go:
#   1. the probe: which driver and NVRTC libraries load, nvidia-smi's view;
#   2. every test of executors/tests/gpu.rs, the ones marked
#      #[ignore = "needs a CUDA device"] included: vector add from PTX and from
#      NVRTC, copy round trips, many concurrent stream futures, the callback
#      waking a task, pooled streams;
#   3. the host<->device bandwidth benchmark (pinned memory, GB/s) and the
#      vector-add timings, printed by the tests (run single-threaded so that
#      nothing else competes for the bus or the device's stream pool).
#
# Usage: scripts/gpu-check.sh [extra cargo args, e.g. --offline]
# Exits non-zero if any check fails. Without a device the ignored tests fail
# with "these tests need CUDA device 0".
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/gpu-check}"

echo "== GPU probe"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
else
    echo "nvidia-smi not found"
fi
(ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvrtc\.so' || echo "no libcuda/libnvrtc in the loader cache") | head -n 8

echo "== build (release)"
cargo test -p vedart-executors --release --test gpu --no-run "$@"

echo "== tests, GPU ones included (vector add, copies, concurrency, bandwidth)"
cargo test -p vedart-executors --release --test gpu "$@" -- \
    --include-ignored --nocapture --test-threads=1

echo "== gpu-check passed"
