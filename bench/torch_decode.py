#!/usr/bin/env python3
"""PyTorch's flex_attention on decode shapes (few query rows, long cache, GQA), beside bench/decode.ts:

    python3 bench/torch_decode.py --shapes 1x32x8x1x32768x128,1x16x16x1x32768x64 --dtypes f16,f32

Shapes are B x Hq x Hkv x Sq x Skv x D; no mask, no score mod (flex's decoding kernel is picked by the short query).
Prints one JSON line per row: {"shape", "dtype", "ms"} (or "error"), after a {"meta"} line, and one
{"copy_gbs"}: torch's own device copy (read + write bytes / time) of a 256 MiB tensor. Timing as bench/torch_flex.py:
torch.compile(flex_attention, dynamic=False), a warm-up call, then the best of --reps timings (torch.cuda.Event)
of --iters back-to-back calls. Rows stop starting after --budget-s seconds.
"""
import argparse
import json
import time

from torch_common import best_ms, raise_recompile_limits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="1x32x8x1x32768x128")
    ap.add_argument("--dtypes", default="f16,f32")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=90)
    a = ap.parse_args()
    t0 = time.time()
    import torch
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention

    raise_recompile_limits(torch)
    print(json.dumps({"meta": {"torch": torch.__version__, "device": torch.cuda.get_device_name()}}), flush=True)
    flex = torch.compile(flex_attention, dynamic=False)

    def best(fn, iters):
        return best_ms(torch, fn, iters, a.reps)

    x = torch.empty(64 * 2**20, dtype=torch.float32, device="cuda").normal_()
    y = torch.empty_like(x)
    ms = best(lambda: y.copy_(x), a.iters)
    print(json.dumps({"copy_gbs": 2 * x.numel() * 4 / (ms * 1e-3) / 1e9}), flush=True)
    del x, y

    for spec in [s for s in a.shapes.split(",") if s]:
        B, Hq, Hkv, Sq, Skv, D = (int(t) for t in spec.split("x"))
        for dt in [d for d in a.dtypes.split(",") if d]:
            row = {"shape": spec, "dtype": dt}
            if time.time() - t0 > a.budget_s:
                row["error"] = "time budget"
                print(json.dumps(row), flush=True)
                continue
            try:
                dtype = torch.float16 if dt == "f16" else torch.float32
                q = torch.randn(B, Hq, Sq, D, device="cuda", dtype=dtype)
                k = torch.randn(B, Hkv, Skv, D, device="cuda", dtype=dtype)
                v = torch.randn(B, Hkv, Skv, D, device="cuda", dtype=dtype)
                with torch.no_grad():
                    row["ms"] = best(lambda: flex(q, k, v, enable_gqa=Hq != Hkv), a.iters)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
