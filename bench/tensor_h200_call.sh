#!/usr/bin/env bash
# One device call for the tensor forward (run by .gpu/on-device.sh from a snapshot root): part C variants with
# Dawn's robustness on, a few with it off, then the subgroup-matrix load-layout probe. Logs go to $OUT.
# FLEX_CALL_STEPS picks steps (default "variants,norobust,layout"); each step has its own time cap.
set -uo pipefail
export FLEX_WEBGPU=dawn FLEX_TUNE_CACHE=off
steps=${FLEX_CALL_STEPS:-variants,norobust,layout}
out=${OUT:-/tmp}
echo "tree: $(cat REV 2>/dev/null)"; date -u
if [[ $steps == *variants* ]]; then
  FLEX_VARIANTS_PARTS=C timeout ${FLEX_CALL_CAP_VARIANTS:-100} deno run -A bench/tensor_variants.ts 2>&1 | tee $out/variants.txt
fi
if [[ $steps == *norobust* ]]; then
  DAWN_EXTRA=disable_robustness FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_SHAPES='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"probe":{"softmax":"none"}},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"probe":{"vTransposed":true,"kAhead":true}},
{"BM":64,"BN":32,"subgroups":2,"kvDirect":false}
]' timeout ${FLEX_CALL_CAP_NOROBUST:-30} deno run -A bench/tensor_variants.ts 2>&1 | tee $out/variants_norobust.txt
fi
if [[ $steps == *layout* ]]; then
  timeout ${FLEX_CALL_CAP_LAYOUT:-30} deno run -A bench/tensor_layout_probe.ts 2>&1 | tee $out/layout.txt
fi
if [[ $steps == *family* ]]; then
  timeout ${FLEX_CALL_CAP_FAMILY:-90} deno test -A tests/kernels/flex_tensor_family.test.ts tests/kernels/flex_forward_tensor_raw.test.ts 2>&1 | tail -n 60 | tee $out/family.txt
fi
date -u
