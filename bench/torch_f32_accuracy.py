#!/usr/bin/env python3
"""How close PyTorch's compiled flex_attention comes to float64 on its own f32 (and f16) inputs: the bar the
library's f32 forward (the tensor family's f16x3 and the portable IEEE kernel, bench/f32_accuracy.ts) is held to.

    python3 bench/torch_f32_accuracy.py            # B1 H4 D64, S 512 and 2048, noop / causal / softcap 20 + causal

Prints one line per (S, case, dtype): rel. L2 of out and of lse against the same math in float64 on the same inputs
(randn q, k, v; PyTorch's defaults: f32 with IEEE dots, float32_matmul_precision "highest").
"""
import os
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

flex = torch.compile(flex_attention, dynamic=False)


def reference(q, k, v, causal, softcap):
    s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    if softcap:
        s = torch.tanh(s / 20) * 20
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=s.device).tril(), float("-inf"))
    lse = torch.logsumexp(s, -1)
    return torch.softmax(s, -1) @ v, lse


def rel(a, b):
    return (torch.linalg.vector_norm((a.double() - b).flatten()) / torch.linalg.vector_norm(b.flatten())).item()


def main():
    torch.manual_seed(0)
    for S in [int(x) for x in os.environ.get("FLEX_ACC_S", "512,2048").split(",")]:
        for case in ("noop", "causal", "softcap"):
            causal, softcap = case != "noop", case == "softcap"
            bm = create_block_mask(lambda b, h, q, kv: q >= kv, 1, 1, S, S, device="cuda") if causal else None
            sm = (lambda s, b, h, q, kv: torch.tanh(s / 20) * 20) if softcap else None
            x = [torch.randn(1, 4, S, 64, device="cuda") for _ in range(3)]
            ref, ref_lse = reference(*[t.double() for t in x], causal, softcap)
            for dt in (torch.float32, torch.float16):
                q, k, v = [t.to(dt) for t in x]
                ref_d, ref_lse_d = (ref, ref_lse) if dt == torch.float32 else reference(*[t.double() for t in (q, k, v)], causal, softcap)
                out, lse = flex(q, k, v, score_mod=sm, block_mask=bm, return_lse=True)
                print(f"S{S} {case} {str(dt).split('.')[-1]}: out rel. L2 {rel(out, ref_d):.3e}, lse rel. L2 {rel(lse, ref_lse_d):.3e}", flush=True)


if __name__ == "__main__":
    main()
