#!/usr/bin/env bash
# One device call for the portable backward (run under .gpu/on-device.sh, which puts deno on PATH): the probe's
# timings (bench/bwd_probe.ts; BWD_PROBE_PARTS=ds for part 1 + the dS' path only, ~50 s), then on the H200 the capture-gradient bit-identity test under Dawn and Deno's
# built-in WebGPU, and the backward's oracle test under Dawn (the rewritten kernels on NVIDIA). Logs into $OUT.
set -u
OUT=${OUT:-/tmp/bwd-probe-out}
mkdir -p "$OUT"
git_rev=$(cat .scratch-rev 2>/dev/null || echo unknown)
echo "commit $git_rev" | tee "$OUT/bwd_probe.txt"
FLEX_WEBGPU=dawn timeout "${PROBE_S:-105}" deno run -A bench/bwd_probe.ts 2>&1 | grep -v "^Warning: max" | tee -a "$OUT/bwd_probe.txt"
for p in dawn native; do
  FLEX_WEBGPU=$p timeout 20 deno test -A --no-check tests/kernels_bwd/capture_grad_determinism.test.ts 2>&1 | grep -E "ok|FAIL|passed|failed|rror" | tee "$OUT/determinism_$p.txt"
done
FLEX_WEBGPU=dawn timeout 35 deno test -A --no-check tests/kernels_bwd/flex_backward.test.ts 2>&1 | grep -E "ok|FAIL|passed|failed|rror" | tee "$OUT/flex_backward_dawn.txt"
# the dS' path (knob on inside the test): dq/dk/dv vs the oracle and bit identity on NVIDIA
FLEX_WEBGPU=dawn timeout 30 deno test -A --no-check tests/kernels_bwd/flex_backward_ds.test.ts 2>&1 | grep -E "ok|FAIL|passed|failed|rror" | tee "$OUT/flex_backward_ds_dawn.txt"
