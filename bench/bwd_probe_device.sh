#!/usr/bin/env bash
# One device call for the portable backward (run under .gpu/on-device.sh, which puts deno on PATH): the probe's
# timings (bench/bwd_probe.ts; BWD_PROBE_PARTS, default ds,dssweep,dschunk: part 1, the dS' path beside the fused
# one with both paths' launch shares, the dQ-from-dS' tilings, a larger scratch), then on the H200 the dS' path's
# oracle + bit-identity test under Dawn (DEVICE_TESTS=all adds the fused backward's oracle test and the
# capture-gradient bit-identity test under Dawn and Deno's built-in WebGPU). Logs into $OUT.
set -u
OUT=${OUT:-/tmp/bwd-probe-out}
mkdir -p "$OUT"
git_rev=$(cat .scratch-rev 2>/dev/null || echo unknown)
echo "commit $git_rev" | tee "$OUT/bwd_probe.txt"
BWD_PROBE_PARTS=${BWD_PROBE_PARTS:-ds,dssweep,dschunk} FLEX_WEBGPU=dawn timeout "${PROBE_S:-100}" deno run -A bench/bwd_probe.ts 2>&1 |
  grep -v "^Warning: max" | tee -a "$OUT/bwd_probe.txt"
# the dS' path (knob on inside the test): dq/dk/dv vs the oracle and bit identity on NVIDIA
FLEX_WEBGPU=dawn timeout 25 deno test -A --no-check tests/kernels_bwd/flex_backward_ds.test.ts 2>&1 | grep -E "ok|FAIL|passed|failed|rror" | tee "$OUT/flex_backward_ds_dawn.txt"
if [ "${DEVICE_TESTS:-}" = all ]; then
  FLEX_WEBGPU=dawn timeout 35 deno test -A --no-check tests/kernels_bwd/flex_backward.test.ts 2>&1 | grep -E "ok|FAIL|passed|failed|rror" | tee "$OUT/flex_backward_dawn.txt"
  for p in dawn native; do
    FLEX_WEBGPU=$p timeout 20 deno test -A --no-check tests/kernels_bwd/capture_grad_determinism.test.ts 2>&1 | grep -E "ok|FAIL|passed|failed|rror" | tee "$OUT/determinism_$p.txt"
  done
fi
