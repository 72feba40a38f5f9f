#!/usr/bin/env python3
"""PyTorch's flex_attention on the cases of bench/cases.ts (same names, masks, score mods, shapes), for the
comparison columns of `deno task bench`, which runs this as a child process:

    python3 bench/torch_flex.py --json --shapes 4x16x4096x64 --cases noop,causal --dtypes f16,f32

With --json it prints one JSON line per (shape, case, dtype):
    {"case", "dtype", "shape": "BxHxSxD", "fwd_ms", "bwd_ms" (null with --no-bwd), "density"}
or {"case", "dtype", "shape", "error"} when that row failed, after one {"meta": {...}} line. Progress goes to stderr.

Timing follows the Deno bench: flex_attention is torch.compile(flex_attention, dynamic=False)'d, each row warms up
(compiles) and measures one call, then takes the best of up to --reps timings (torch.cuda.Event) of up to --iters
back-to-back calls, fewer where a call is long (--target-ms per timing, --row-ms per row, at least one timing).
The backward is (forward + backward) − forward, torch.autograd.grad of out against a fixed random dOut for dq, dk, dv.
The forward is timed with inputs that require grad (the training graph, as in the forward + backward timing).
Density = 1 − block_mask.sparsity()/100 (BLOCK_SIZE 128, B and H broadcast); 1 for noop (no block mask).
f32 runs with IEEE f32 dots (float32_matmul_precision "highest", PyTorch's default), like our f32 kernels.
"""
import argparse
import json
import math
import sys
import time

from torch_common import best_ms, raise_recompile_limits

CASES = ["noop", "causal", "sliding_window", "prefix_lm", "document", "natten", "alibi", "softcap"]
NATTEN_KERNEL = 7


def image_shape(S):
    """bench/cases.ts's imageShape: rows x cols with the largest area <= S, rows <= cols <= 4 rows."""
    for area in range(S, 0, -1):
        h = math.isqrt(area)
        lo = max(1, math.ceil(math.sqrt(area / 4)))
        while h >= lo:
            if area % h == 0:
                return h, area // h
            h -= 1
    return 1, 1


def causal(b, h, q, kv):
    return q >= kv


def build_case(name, S, H, device):
    """(mask_mod or None, score_mod or None) for one case; raises when the case does not apply to S."""
    import torch

    if name == "noop":
        return None, None
    if name == "causal":
        return causal, None
    if name == "sliding_window":
        return (lambda b, h, q, kv: (q >= kv) & (q - kv <= 1024)), None
    if name == "prefix_lm":
        return (lambda b, h, q, kv: (kv < 2048) | (q >= kv)), None
    if name == "document":
        docs = torch.zeros(S, dtype=torch.int32, device=device)
        docs[S // 2:] = 1
        return (lambda b, h, q, kv: (docs[q] == docs[kv]) & (q >= kv)), None
    if name == "natten":
        ih, iw = image_shape(S)
        k = NATTEN_KERNEL
        if ih * iw != S:
            raise ValueError(f"natten: S = {S} is not an h x w image with h <= w <= 4h")
        if min(ih, iw) < k:
            raise ValueError(f"natten: the {ih}x{iw} image is smaller than the kernel {k}")
        r = k // 2

        def natten(b, h, q, kv):
            q_row, q_col = q // iw, q % iw
            kv_row, kv_col = kv // iw, kv % iw
            c_row = q_row.clamp(r, ih - 1 - r)
            c_col = q_col.clamp(r, iw - 1 - r)
            near = ((c_row - kv_row).abs() <= r) & ((c_col - kv_col).abs() <= r)
            return near & (q < ih * iw) & (kv < ih * iw)

        return natten, None
    if name == "alibi":
        slopes = torch.exp2(-8.0 * (torch.arange(H, device=device, dtype=torch.float32) + 1) / H)
        return causal, (lambda score, b, h, q, kv: score + slopes[h] * (kv - q))
    if name == "softcap":
        return causal, (lambda score, b, h, q, kv: 20.0 * torch.tanh(score / 20.0))
    raise ValueError(f"unknown case {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON line per row (else a plain table)")
    ap.add_argument("--shapes", default="4x16x4096x64,16x16x8192x64")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--dtypes", default="f16,f32")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--row-ms", type=float, default=1000.0)
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no new row after this many seconds")
    ap.add_argument("--no-bwd", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no per-row progress on stderr (the Deno bench prints its own)")
    a = ap.parse_args()

    def emit(obj):
        if a.json:
            print(json.dumps(obj), flush=True)
        elif "meta" in obj:
            print(" ".join(f"{k}={v}" for k, v in obj["meta"].items()), flush=True)
        else:
            print(f"{obj['shape']:>16} {obj['case']:>15} {obj['dtype']}: " + (f"error {obj['error']}" if "error" in obj else
                  f"fwd {obj['fwd_ms']:.3f} ms, bwd {obj['bwd_ms'] if obj['bwd_ms'] is None else round(obj['bwd_ms'], 3)} ms, "
                  f"density {obj['density']:.3f}"), flush=True)

    def log(msg):
        if a.quiet:
            return
        sys.stderr.write(f"torch_flex [{time.time() - t_start:.0f} s]: {msg}\n")  # one write: no interleaving mid-line
        sys.stderr.flush()

    t_start = time.time()
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()]
    try:
        import torch
        import torch._dynamo
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except Exception as e:  # noqa: BLE001
        for s in shapes:
            for c in cases:
                for d in dtypes:
                    emit({"case": c, "dtype": d, "shape": s, "error": f"import: {type(e).__name__}: {e}"})
        return
    if not torch.cuda.is_available():
        for s in shapes:
            for c in cases:
                for d in dtypes:
                    emit({"case": c, "dtype": d, "shape": s, "error": "torch.cuda.is_available() is False"})
        return
    raise_recompile_limits(torch)
    # f32: flex's kernels use IEEE f32 dots while torch.get_float32_matmul_precision() is "highest" (the default;
    # reported in the meta line). Nothing is set here: mixing the old and new TF32 switches raises in torch ≥ 2.9.
    device = "cuda"
    flex = torch.compile(flex_attention, dynamic=False)
    try:
        import triton
        triton_version = getattr(triton, "__version__", "?")
    except Exception:  # noqa: BLE001
        triton_version = "not importable"
    emit({"meta": {"torch": torch.__version__, "triton": triton_version,
                   "device": torch.cuda.get_device_name(0),
                   "float32_matmul_precision": torch.get_float32_matmul_precision()}})

    def best(fn):
        return best_ms(torch, fn, a.iters, a.reps, target_ms=a.target_ms, row_ms=a.row_ms)

    dt_of = {"f16": torch.float16, "f32": torch.float32, "bf16": torch.bfloat16}
    for spec in shapes:
        B, H, S, D = (int(x) for x in spec.split("x"))
        for case in cases:
            try:
                mask_mod, score_mod = build_case(case, S, H, device)
                block_mask = None if mask_mod is None else create_block_mask(
                    mask_mod, B=None, H=None, Q_LEN=S, KV_LEN=S, device=device, BLOCK_SIZE=128)
                density = 1.0 if block_mask is None else 1.0 - float(block_mask.sparsity()) / 100.0
            except Exception as e:  # noqa: BLE001
                for d in dtypes:
                    emit({"case": case, "dtype": d, "shape": spec, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"})
                continue
            for d in dtypes:
                row = {"case": case, "dtype": d, "shape": spec}
                if time.time() - t_start > a.budget_s:
                    row["error"] = f"skipped: past the {a.budget_s:.0f} s budget"
                    emit(row)
                    continue
                q = k = v = dout = None
                try:
                    dtype = dt_of[d]
                    gen = torch.Generator(device=device).manual_seed(0)
                    q, k, v, dout = (torch.randn(B, H, S, D, device=device, dtype=dtype, generator=gen) for _ in range(4))
                    for t in (q, k, v):
                        t.requires_grad_(True)

                    def fwd():
                        return flex(q, k, v, score_mod=score_mod, block_mask=block_mask)

                    def fwd_bwd():
                        return torch.autograd.grad(fwd(), (q, k, v), dout)

                    row["fwd_ms"] = best(fwd)
                    row["bwd_ms"] = None if a.no_bwd else best(fwd_bwd) - row["fwd_ms"]
                    row["density"] = density
                    log(f"{spec} {case} {d}: fwd {row['fwd_ms']:.3f} ms, bwd "
                        + ("-" if row["bwd_ms"] is None else f"{row['bwd_ms']:.3f}") + " ms")
                except Exception as e:  # noqa: BLE001
                    row.pop("fwd_ms", None)
                    row.pop("bwd_ms", None)
                    row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                    log(f"{spec} {case} {d}: {row['error']}")
                emit(row)
                del q, k, v, dout
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
