"""Where one cell's generate spends its time: the measurement path's model, quantization and engine, then
torch.profiler over one generate call, written as JSON (a diagnostic, not a campaign record).

    python scripts/profile_decode.py --model qwen2.5-1.5b-instruct --quant torchao-int8-wo \
        --engine hf-compiled --batch-size 8 --out $OUT/profile-int8wo-b8.json

Reports: the generate wall time and tokens/s over `--new-tokens` (after `--warmup` calls; the first compiles),
the GPU's busy time within the profiled call (sum of kernel times, ms) against its wall time, the top kernels
by total GPU time (name, calls, total ms) and torch._dynamo's counters (recompilations, graph breaks,
cudagraph skips), so a slow decode can be told apart as GPU-bound (one kernel dominates) or host-bound (the
GPU idles between launches). For the HF engines also `attention_calls`: after the profile, one more generate call
of 2 new tokens with the engine's KV cache, uncompiled, records how transformers' SDPA attention ran: per (mask
given, K/V length, K/V heads) whether it ran grouped (`enable_gqa`) or on K/V expanded to the query heads
(`repeat_kv`), as `transformers.integrations.sdpa_attention.use_gqa_in_sdpa` decides (the same Python decides
when the step is compiled, so the uncompiled call shows the compiled one's path)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="catalogue model id (random weights)")
    ap.add_argument("--quant", default="bf16")
    ap.add_argument("--quant-param", action="append", default=[], metavar="KEY=JSON",
                    help="a quant param, e.g. set_inductor_config=false (repeatable)")
    ap.add_argument("--engine", default="hf-compiled")
    ap.add_argument("--engine-param", action="append", default=[], metavar="KEY=JSON",
                    help="an engine param, e.g. woq_lowering=false (hf-compiled; repeatable)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=1,
                    help="generate calls before the timed one (the first compiles and records the CUDA graphs)")
    ap.add_argument("--top", type=int, default=15, help="kernels to list")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from measure.backends import get_backend
    from measure.engines import get_engine
    from measure.engines.hf_eager import HfEager
    from measure.models import build_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    params = _params(ap, args.quant_param, "--quant-param", "set_inductor_config=false")
    engine_params = _params(ap, args.engine_param, "--engine-param", "woq_lowering=false")
    backend = get_backend(args.quant, **params)
    engine = get_engine(args.engine, **engine_params)
    loaded = build_model(args.model, dtype=backend.build_dtype, device=device)
    model = loaded.model
    backend.apply(model)
    engine.prepare(model)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, loaded.vocab_size, (args.batch_size, args.prompt_tokens), generator=gen).to(device)
    mask = torch.ones_like(ids)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(max(args.warmup, 0)):
        engine.generate(model, ids, mask, args.new_tokens)
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.generate(model, ids, mask, args.new_tokens)
    sync()
    wall_s = time.perf_counter() - t0

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        engine.generate(model, ids, mask, args.new_tokens)
        sync()
        profiled_wall_s = time.perf_counter() - t0
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy_ms = sum(e.device_time for e in kernels) / 1e3 if kernels else None
    rows = sorted(prof.key_averages(), key=lambda a: a.device_time_total if kernels else a.self_cpu_time_total,
                  reverse=True)
    top = [{"name": a.key[:160], "calls": a.count, "device_total_ms": round(a.device_time_total / 1e3, 3),
            "self_cpu_total_ms": round(a.self_cpu_time_total / 1e3, 3)} for a in rows[:args.top]]
    attention = None
    if isinstance(engine, HfEager):  # the HF engines (hf-compiled is one): transformers' attention, its KV cache
        attention = attention_calls(lambda: engine.generate(model, ids, mask, 2, disable_compile=True))
    try:
        from torch._dynamo.utils import counters
        dynamo = {k: dict(v) for k, v in counters.items() if v}
    except Exception as e:  # pragma: no cover - diagnostics only
        dynamo = {"error": repr(e)}
    out = {
        "model": args.model, "quant": args.quant, "quant_params": params, "engine": args.engine,
        "engine_params": engine_params,
        "batch_size": args.batch_size, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch_version": torch.__version__, "warmup_calls": args.warmup, "warmup_s": round(warm_s, 3), "generate_wall_s": round(wall_s, 6),
        "tokens_per_s": round(args.batch_size * args.new_tokens / wall_s, 2),
        "profiled_wall_ms": round(profiled_wall_s * 1e3, 2),
        "gpu_busy_ms": None if busy_ms is None else round(busy_ms, 2),
        "kernel_launches": len(kernels), "top": top, "dynamo_counters": dynamo, "attention_calls": attention,
        "command": " ".join(sys.argv),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps({k: out[k] for k in ("batch_size", "tokens_per_s", "profiled_wall_ms", "gpu_busy_ms",
                                          "kernel_launches")}))
    for r in top[:8]:
        print(f"  {r['device_total_ms']:10.2f} ms {r['calls']:6d}x  {r['name'][:110]}")
    return 0


def attention_calls(generate) -> list[dict] | None:
    """How transformers' SDPA attention ran during `generate()` (None when transformers has no such hook): one row
    per (mask given, K/V length in tokens, K/V heads, grouped) with its number of attention calls; `grouped` false
    means SDPA ran on K/V copied out to every query head (`repeat_kv`), which a step then writes and reads."""
    from collections import Counter

    try:
        import transformers.integrations.sdpa_attention as sdpa
        original = sdpa.use_gqa_in_sdpa
    except (ImportError, AttributeError):
        return None
    seen: Counter = Counter()

    def spy(attention_mask, key, value):
        grouped = original(attention_mask, key, value)
        seen[(attention_mask is not None, int(key.shape[-2]), int(key.shape[1]), bool(grouped))] += 1
        return grouped

    sdpa.use_gqa_in_sdpa = spy
    try:
        generate()
    finally:
        sdpa.use_gqa_in_sdpa = original
    return [{"mask": m, "kv_len": n, "kv_heads": h, "grouped": g, "calls": c}
            for (m, n, h, g), c in sorted(seen.items())]


def _params(ap: argparse.ArgumentParser, values: list[str], flag: str, example: str) -> dict:
    """`KEY=JSON` options as a dict; a malformed one is a usage error (exit 2) naming `flag` and `example`."""
    params = {}
    for p in values:
        key, sep, value = p.partition("=")
        try:
            if not (key and sep):
                raise ValueError(p)
            params[key] = json.loads(value)
        except ValueError:  # json.JSONDecodeError is one
            ap.error(f"{flag} {p!r}: expected KEY=JSON, e.g. {example}")
    return params


if __name__ == "__main__":
    raise SystemExit(main())
