"""What bench/torch_flex.py and bench/torch_decode.py share: dynamo's recompile limits and the CUDA-event timing."""
import math

RECOMPILE_KNOBS = ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit")


def raise_recompile_limits(torch):
    """Every case / shape is a new compile of flex_attention: far over dynamo's default of 8, after which it would
    silently fall back to eager."""
    import torch._dynamo  # noqa: F401  (the config module)

    for knob in RECOMPILE_KNOBS:
        try:
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 4096)
        except Exception:  # noqa: BLE001  (a renamed or read-only knob)
            pass


def elapsed_ms(torch, fn, n):
    """Mean ms of n back-to-back calls, between two CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


def best_ms(torch, fn, iters, reps, target_ms=None, row_ms=None):
    """One warm-up call (it compiles), then the best of `reps` timings of `iters` calls each; with target_ms, fewer
    calls per timing where one call is long (about target_ms per timing), and with row_ms fewer timings (at least one)."""
    fn()
    torch.cuda.synchronize()
    n, r = iters, reps
    if target_ms is not None:
        one = elapsed_ms(torch, fn, 1)
        n = max(1, min(iters, math.ceil(target_ms / max(one, 1e-6))))
        if row_ms is not None:
            r = max(1, min(reps, math.floor(row_ms / max(n * one, 1e-6))))
    return min(elapsed_ms(torch, fn, n) for _ in range(r))
