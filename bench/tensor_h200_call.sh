#!/usr/bin/env bash
# One device call for the tensor forward (run by .gpu/on-device.sh from a snapshot root). Steps (FLEX_CALL_STEPS,
# default "variants,family,norobust"): the tensor-family oracle tests on the intrinsics; part C variants (GPU-timed) with the
# SM clock logged beside; "norobust": a few with Dawn's robustness off; "split": the GEMM chain's halves; "staged": the
# staged shapes; "layout": the matrix-load layout probe (GPU-timed since session 5; FLEX_LAYOUT_PARTS=W for part W alone);
# "ptrans": P transposed in workgroup memory and K as row_major right matrices from Kᵀ vs the default, with softcap
# "pipe": the pipelined staged shapes (kvPipe) vs the default, with softcap; "unguarded": two of them with robustness off;
# "headdim128": the same at D 128; "side": part S (variants side by side, FLEX_SIDE_SHAPES); "ready": kernel-ready per
# FLEX_READY_FIRST shape; "single": the kvSingle raw tests on the intrinsics; "compact": the library's oracle
# cases and the raw compactSmem cases on the intrinsics; "compactside": part S, the compactSmem shapes beside the defaults
# (run "family" with FLEX_TENSOR_FIRST set to a new shape to put it through the library-level oracle tests first);
# "loads": the forward default beside its two-buffer form, the backward default (lateLoads) beside its plain form, timed.
# Each step has its own time cap (FLEX_CALL_CAP_<STEP>); logs go to $OUT.
set -uo pipefail
export FLEX_WEBGPU=dawn FLEX_TUNE_CACHE=off
steps=${FLEX_CALL_STEPS:-variants,family,norobust}
out=${OUT:-/tmp}
echo "tree: $(cat REV 2>/dev/null)"; date -u
if [[ $steps == *variants* ]]; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 250 > $out/clocks.csv 2>&1 &
  smi=$!
  FLEX_VARIANTS_PARTS=C timeout ${FLEX_CALL_CAP_VARIANTS:-95} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants.txt
  kill $smi 2>/dev/null
fi
if [[ $steps == *ptrans* ]]; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 250 > $out/clocks.csv 2>&1 &
  smi=$!
  FLEX_VARIANTS_PRECOMPILE=1 FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_CASES=noop,causal,soft FLEX_VARIANTS_SHAPES='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"pTransposed":true},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"pTransposed":true,"kTransposed":true},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"pTransposed":true,"probe":{"softmax":"none"}},
{"BM":64,"BN":32,"subgroups":2,"kvDirect":true,"prefetchV":true,"pTransposed":true},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"kTransposed":true}
]' timeout ${FLEX_CALL_CAP_PTRANS:-75} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_ptrans.txt
  kill $smi 2>/dev/null
fi
if [[ $steps == *pipe* ]]; then
  # session 6 H4: the pipelined staged shapes (kvPipe) beside the direct default; FLEX_PIPE_SHAPES overrides the list
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 250 > $out/clocks_pipe.csv 2>&1 &
  smi=$!
  pipe_shapes='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"kTransposed":true},
{"BM":128,"BN":32,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true},
{"BM":128,"BN":32,"subgroups":4,"kvDirect":false,"kvPipe":true,"sTransposed":true,"pTransposed":true},
{"BM":128,"BN":32,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true},
{"BM":64,"BN":32,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true},
{"BM":64,"BN":16,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true},
{"BM":128,"BN":16,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true},
{"BM":128,"BN":32,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"probe":{"softmax":"none"}}
]'
  FLEX_VARIANTS_PRECOMPILE=1 FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_CASES=noop,causal,soft FLEX_VARIANTS_SHAPES="${FLEX_PIPE_SHAPES:-$pipe_shapes}" \
    timeout ${FLEX_CALL_CAP_PIPE:-170} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_pipe.txt
  kill $smi 2>/dev/null
fi
if [[ ,$steps, == *,compact,* ]]; then
  # session 8 HF: the library's tensor-family oracle cases (run with FLEX_TENSOR_FIRST set to a compactSmem shape) and the
  # raw compactSmem cases, on the intrinsics
  NO_COLOR=1 timeout ${FLEX_CALL_CAP_COMPACT:-45} deno test -A --no-check --filter "/tensor family vs the float64|compactSmem/" tests/kernels/flex_tensor_family.test.ts tests/kernels/flex_forward_tensor_raw.test.ts 2>&1 \
    | grep -E "^(ok|FAILED|error)|\.\.\. (ok|FAILED|ignored)|passed|failed|out |Expected|Received" | tee $out/compact.txt
fi
if [[ $steps == *compactside* ]]; then
  # session 8 HF (to run): part S for the compactSmem shapes beside the defaults, the new ones first, no serial
  # compile-alone pass (it took 33 s of the 82 s cap in HF's call: kvSingle's softcap kernel alone compiles 18 s)
  P='"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true'
  compact_shapes="[
{\"BM\":128,\"BN\":32,\"subgroups\":8,$P,\"compactSmem\":true,\"cases\":\"noop,causal,softe\"},
{\"BM\":128,\"BN\":32,\"subgroups\":8,$P,\"kvSingle\":true,\"compactSmem\":true,\"cases\":\"noop,causal,softe\"},
{\"BM\":128,\"BN\":16,\"subgroups\":8,$P,\"compactSmem\":true,\"cases\":\"noop,causal,softe\"},
{\"BM\":128,\"BN\":16,\"subgroups\":8,$P,\"kvSingle\":true,\"compactSmem\":true,\"cases\":\"noop,causal,softe\"},
{\"BM\":128,\"BN\":32,\"subgroups\":8,$P,\"cases\":\"noop,causal,softe\"},
{\"BM\":128,\"BN\":32,\"subgroups\":8,$P,\"kvSingle\":true,\"cases\":\"noop,causal\"}
]"
  FLEX_VARIANTS_PARTS=S FLEX_VARIANTS_COMPILE_MS=0 FLEX_VARIANTS_WARM_MS=${FLEX_VARIANTS_WARM_MS:-150} FLEX_VARIANTS_SHAPES="$compact_shapes" \
    timeout ${FLEX_CALL_CAP_COMPACTSIDE:-75} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_compact.txt
fi
if [[ ,$steps, == *,side,* ]]; then
  # session 7 HF: part S — every variant compiled and checked first, then all timed round-robin with warm clocks
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 250 > $out/clocks_side.csv 2>&1 &
  smi=$!
  side_shapes='[
{"BM":128,"BN":32,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"cases":"noop,causal,soft,softc,softe"},
{"BM":128,"BN":32,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"kvSingle":true,"cases":"noop,causal,softc"},
{"BM":128,"BN":32,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"probe":{"softmax":"none"},"cases":"noop"},
{"BM":128,"BN":32,"subgroups":4,"kvDirect":false,"kvPipe":true,"sTransposed":true,"pTransposed":true,"cases":"noop,causal,softc"},
{"BM":64,"BN":32,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"kvSingle":true},
{"BM":64,"BN":64,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"kvSingle":true},
{"BM":64,"BN":16,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true},
{"BM":64,"BN":16,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"probe":{"smemPad":30720}}
]'
  FLEX_VARIANTS_PARTS=S FLEX_VARIANTS_WARM_MS=${FLEX_VARIANTS_WARM_MS:-150} FLEX_VARIANTS_SHAPES="${FLEX_SIDE_SHAPES:-$side_shapes}" \
    timeout ${FLEX_CALL_CAP_SIDE:-95} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_side.txt
  kill $smi 2>/dev/null
fi
if [[ $steps == *ready* ]]; then
  # the f16 kernel-ready time (new score mod → first result − a warm call) with each of FLEX_READY_FIRST's shapes
  # (';'-separated FLEX_TENSOR_FIRST values; "default" = the library's order)
  IFS=';' read -ra firsts <<< "${FLEX_READY_FIRST:-default}"
  prev_first=${FLEX_TENSOR_FIRST-}
  for f in "${firsts[@]}"; do
    if [[ $f == default ]]; then unset FLEX_TENSOR_FIRST; else export FLEX_TENSOR_FIRST="$f"; fi
    echo "ready with FLEX_TENSOR_FIRST=${FLEX_TENSOR_FIRST:-(default)}" | tee -a $out/ready.txt
    READY_MODS=${READY_MODS:-3} READY_DTYPES=f16 timeout ${FLEX_CALL_CAP_READY:-15} deno run -A bench/kernel_ready.ts 2>&1 | grep -v Warning | tee -a $out/ready.txt
  done
  if [[ -n $prev_first ]]; then export FLEX_TENSOR_FIRST="$prev_first"; else unset FLEX_TENSOR_FIRST; fi
fi
if [[ $steps == *single* ]]; then
  NO_COLOR=1 timeout ${FLEX_CALL_CAP_SINGLE:-25} deno test -A --filter "/kvSingle/" tests/kernels/flex_forward_tensor_raw.test.ts 2>&1 \
    | grep -E "^(ok|FAILED|error)|\.\.\. (ok|FAILED|ignored)|passed|failed|out " | tee $out/single.txt
fi
if [[ $steps == *headdim128* ]]; then
  # D 128: the direct default beside the pipelined shapes that fit 48 KiB of workgroup storage there
  FLEX_VARIANTS_D=128 FLEX_VARIANTS_PRECOMPILE=1 FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_CASES=noop,causal FLEX_VARIANTS_SHAPES='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"kTransposed":true},
{"BM":64,"BN":16,"subgroups":4,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true},
{"BM":128,"BN":16,"subgroups":8,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true}
]' timeout ${FLEX_CALL_CAP_HEADDIM128:-30} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_d128.txt
fi
if [[ $steps == *unguarded* ]]; then
  # what Dawn's robustness (bounds clamps on every workgroup / storage index) costs the pipelined shapes
  DAWN_EXTRA=disable_robustness FLEX_VARIANTS_PRECOMPILE=1 FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_CASES=noop,causal FLEX_VARIANTS_SHAPES='[
{"BM":128,"BN":32,"subgroups":4,"kvDirect":false,"kvPipe":true},
{"BM":128,"BN":32,"subgroups":4,"kvDirect":false,"kvPipe":true,"sTransposed":true,"pTransposed":true}
]' timeout ${FLEX_CALL_CAP_UNGUARDED:-30} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_pipe_norobust.txt
fi
if [[ $steps == *family* ]]; then
  NO_COLOR=1 timeout ${FLEX_CALL_CAP_FAMILY:-65} deno test -A --filter "/tensor family vs the float64|candidate shape \(subgroup|pipelined staged K\/V \(subgroup/" tests/kernels/flex_tensor_family.test.ts tests/kernels/flex_forward_tensor_raw.test.ts 2>&1 \
    | grep -E "^(ok|FAILED|error)|\.\.\. (ok|FAILED|ignored)|passed|failed|out " | tee $out/family.txt
fi
if [[ $steps == *norobust* ]]; then
  DAWN_EXTRA=disable_robustness FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_SHAPES='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"probe":{"softmax":"none"}},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"kAhead":true}
]' timeout ${FLEX_CALL_CAP_NOROBUST:-30} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_norobust.txt
fi
if [[ $steps == *split* ]]; then
  # where the GEMM chain's 4.77 ms go (session 5): Q·Kᵀ half vs P·V half, softmax left out
  FLEX_VARIANTS_PRECOMPILE=1 FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_SHAPES='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"probe":{"softmax":"none"}},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"probe":{"softmax":"none","skip":"qk"}},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true,"probe":{"softmax":"none","skip":"pv"}}
]' timeout ${FLEX_CALL_CAP_SPLIT:-40} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_split.txt
fi
if [[ $steps == *staged* ]]; then
  # the staged shapes, never timed warm on the device (their compiles filled session 5's caps)
  FLEX_VARIANTS_PRECOMPILE=1 FLEX_VARIANTS_PARTS=C FLEX_VARIANTS_SHAPES='[
{"BM":32,"BN":32,"subgroups":1,"kvDirect":true,"prefetchV":true},
{"BM":64,"BN":32,"subgroups":2,"kvDirect":false},
{"BM":128,"BN":32,"subgroups":4,"kvDirect":false},
{"BM":32,"BN":32,"subgroups":1,"kvDirect":false},
{"BM":64,"BN":32,"subgroups":2,"kvDirect":true,"prefetchV":true}
]' timeout ${FLEX_CALL_CAP_STAGED:-90} deno run -A bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰" | tee $out/variants_staged.txt
fi
if [[ $steps == *layout* ]]; then
  timeout ${FLEX_CALL_CAP_LAYOUT:-30} deno run -A bench/tensor_layout_probe.ts 2>&1 | tee $out/layout.txt
fi
if [[ $steps == *loads* ]]; then
  # the forward default and its two-buffer form ({kvSingle:false}), the backward default (lateLoads since session 16) and
  # its plain form (lateLoads false): the oracle tests on the
  # intrinsics (forward: the optimisticMax shapes), then forward part S, then the backward per launch
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
  timeout ${FLEX_CALL_CAP_LOADS_TESTS:-150} deno test -A --no-check --filter "/${FLEX_CALL_LOADS_FILTER:-optimisticMax}/" tests/kernels/flex_forward_tensor_raw.test.ts 2>&1 | grep -v "│\|╭\|╰\|^Warning" | tee $out/loads_tests.txt | grep "passed\|FAIL"
  timeout ${FLEX_CALL_CAP_LOADS_TESTS:-150} deno test -A --no-check tests/kernels_bwd/flex_backward_tensor_late_loads.test.ts 2>&1 | grep -v "│\|╭\|╰\|^Warning" | tee -a $out/loads_tests.txt | grep "passed\|FAIL"
  B='"BM":128,"subgroups":8,"BN":16,"kvDirect":false,"kvPipe":true,"shuffleReduce":true,"sTransposed":true,"pTransposed":true,"kvSingle":true,"compactSmem":true,"optimisticMax":true'
  DAWN_EXTRA=disable_robustness FLEX_VARIANTS_PARTS=S FLEX_VARIANTS_PASSES=3 FLEX_VARIANTS_WARM_MS=150 FLEX_VARIANTS_COMPILE_MS=0 FLEX_VARIANTS_CASES=noop,causal,soft \
  FLEX_VARIANTS_SHAPES="[{$B},{$B,\"kvSingle\":false}]" \
    timeout ${FLEX_CALL_CAP_LOADS:-240} deno run -A --no-check bench/tensor_variants.ts 2>&1 | grep -v "│\|╭\|╰\|^Warning" | tee $out/loads_variants.txt | grep "^S .*noop \|bad\|FAIL"
  FLEX_BD_CASES=noop,causal FLEX_BD_OVERRIDES='{"plain":{"ownerDirect":false,"streamDirect":false,"lateLoads":false}}' \
    timeout ${FLEX_CALL_CAP_LOADS_BWD:-180} deno run -A --no-check bench/tensor_bwd_breakdown.ts 2>&1 | grep -v "│\|╭\|╰\|^Warning" | tee $out/loads_bwd.txt | tail -30
fi
date -u
