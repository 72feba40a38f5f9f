#!/usr/bin/env bash
# Runs scripts/native_exit_repro.ts N times (default 40) and counts abnormal exits (134 = SIGABRT, 139 = SIGSEGV).
#   scripts/native_exit_loop.sh [N] [extra args for the repro]     alone
#   BESIDE=1 scripts/native_exit_loop.sh ...                        with a second, concurrent loop beside it
# Plain `deno run` does the GPU work on the main thread and never meets the abort; add --worker=close (and
# pin to one core) to reproduce it, or use scripts/native_exit_count.sh. Findings: scripts/NATIVE_EXIT.md.
set -uo pipefail
cd "$(dirname "$0")/.."
n="${1:-40}"; shift || true
run_loop() {
  local bad=0 codes=""
  for i in $(seq "$n"); do
    XDG_RUNTIME_DIR=/tmp deno run -A --config deno.json scripts/native_exit_repro.ts "$@" > /tmp/native_exit_$$_$BASHPID.log 2>&1
    c=$?
    if [ "$c" != 0 ]; then bad=$((bad + 1)); codes="$codes $c"; tail -n 3 /tmp/native_exit_$$_$BASHPID.log | sed 's/^/    /'; fi
  done
  echo "$n runs, $bad abnormal exits:${codes:- none}"
}
if [ "${BESIDE:-0}" = 1 ]; then run_loop "$@" & run_loop "$@"; wait; else run_loop "$@"; fi
