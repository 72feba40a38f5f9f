#!/usr/bin/env bash
# Runs a command N times (or until a time box ends) and counts its exit codes and glibc/panic messages:
#   scripts/native_exit_count.sh LABEL N SECONDS command args...
# One result line:  LABEL: R runs in T s, exit codes {0: a, 134: b, ...}, messages {...}
# Each abnormal run's last lines go to /tmp/native_exit_count_LABEL.log (kept for reading).
# BESIDE="command" runs that command in a loop beside the counted one for the whole time (a second process).
# CORES=DIR runs the command in DIR with core dumps on (core_pattern "core": DIR/core.PID, for gdb); paths in the
# command must then be absolute.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${CORES:-}" ]; then mkdir -p "$CORES"; cd "$CORES"; ulimit -c unlimited; fi
label="$1"; n="$2"; box="$3"; shift 3
log="/tmp/native_exit_count_${label}.log"; : > "$log"
out="/tmp/native_exit_count_$$.out"
declare -A codes msgs
beside_pid=""
if [ -n "${BESIDE:-}" ]; then
  ( while :; do bash -c "$BESIDE" > /dev/null 2>&1; done ) & beside_pid=$!
fi
start=$(date +%s); runs=0
for i in $(seq "$n"); do
  [ $(( $(date +%s) - start )) -ge "$box" ] && break
  "$@" > "$out" 2>&1
  c=$?; runs=$((runs + 1))
  codes[$c]=$(( ${codes[$c]:-0} + 1 ))
  if [ "$c" != 0 ]; then
    m=$(grep -a -o -E "corrupted[^\"]*|double free[^\"]*|free\(\)[^\"]*|malloc[^\"]*\(\)[^\"]*|munmap_chunk[^\"]*|Segmentation fault|panicked at[^\"]*|Aborted" "$out" | head -1 | tr ' ' '_')
    m="${m:-none}"; msgs[$m]=$(( ${msgs[$m]:-0} + 1 ))
    { echo "--- run $i exit $c"; tail -n 5 "$out"; } >> "$log"
  fi
done
if [ -n "$beside_pid" ]; then kill -- "$beside_pid" 2>/dev/null; wait "$beside_pid" 2>/dev/null; fi
cs=""; for k in "${!codes[@]}"; do cs="$cs $k: ${codes[$k]},"; done
ms=""; for k in "${!msgs[@]}"; do ms="$ms $k: ${msgs[$k]},"; done
echo "$label: $runs runs in $(( $(date +%s) - start )) s, exit codes {${cs%,} }, messages {${ms%,} }"
rm -f "$out"
