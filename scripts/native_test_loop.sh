#!/usr/bin/env bash
# Runs one test file under Deno's built-in WebGPU N times and reports the exit codes and the crash tails:
#   scripts/native_test_loop.sh tests/kernels/executor.test.ts 20
set -uo pipefail
cd "$(dirname "$0")/.."
file="$1"; n="${2:-10}"; bad=0
for i in $(seq "$n"); do
  FLEX_WEBGPU=native XDG_RUNTIME_DIR=/tmp deno test -A "$file" > /tmp/native_test_loop.log 2>&1
  c=$?
  summary=$(grep -E "^(ok|FAILED) \|" /tmp/native_test_loop.log | tail -1)
  if [ "$c" != 0 ]; then bad=$((bad + 1)); echo "run $i: exit $c ($summary)"; grep -v "^\s*$" /tmp/native_test_loop.log | tail -n 4 | sed 's/^/    /'; fi
done
echo "$file: $n runs, $bad abnormal"
