#!/usr/bin/env bash
# The CI's arrangement: one test file under Deno's built-in WebGPU in a loop while the same file runs under Dawn
# in a second loop beside it (tests/run.ts runs the two Deno passes side by side).
#   scripts/side_by_side_loop.sh tests/kernels/executor.test.ts 10
set -uo pipefail
cd "$(dirname "$0")/.."
file="$1"; n="${2:-10}"
( for i in $(seq "$n"); do FLEX_WEBGPU=dawn XDG_RUNTIME_DIR=/tmp deno test -A "$file" > /tmp/side_dawn.log 2>&1 || echo "dawn run $i: exit $?"; done ) &
bash scripts/native_test_loop.sh "$file" "$n"
wait
