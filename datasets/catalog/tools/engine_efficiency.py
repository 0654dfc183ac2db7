"""Batch-1 decode roofline efficiency per engine, the `analytic.roofline_efficiency` of engines.yaml.

    python datasets/catalog/tools/engine_efficiency.py [--argonne PATH/All_results.csv]

Definition (the same for every engine): at batch 1, decoding one token streams every weight once plus the
KV cache of the current context, so the bandwidth roofline time per output token is

    t_roofline = (params * 2 bytes  +  kv_bytes_per_token * mean_context) / spec_bandwidth

and roofline_efficiency = t_roofline / t_measured (1.0 = the card's datasheet bandwidth fully used).
`spec_bandwidth` is `bandwidth_gbs` of the card's row in gpus.csv; params and KV shape come from models.csv.

Sources:
  * vllm, tensorrt-llm, llama.cpp: argonne-lcf/LLM-Inference-Bench @ 4211f5d4, Plots/All_results.csv
    (BSD-3-Clause), rows "Nvidia H100 GPU", 1 GPU, batch 1, input = output length L in {128, 256}, fp16
    weights (their vLLM/H100, TensorRT-LLM/H100 and llama.cpp/H100 READMEs use --dtype float16,
    --dtype float16 and an f16 GGUF; the llama.cpp/H100 README's nvidia-smi shows "NVIDIA H100 80GB HBM3",
    i.e. gpus.csv `h100-sxm`). `Latency` is seconds for the whole request (prefill of L tokens plus L
    decoded tokens; `Throughput` = 2L / Latency in every row), so t_measured = Latency / L slightly
    overstates the decode time: the efficiencies are lower bounds. Mean decode context = 1.5 L.
    A100 and GH200 rows are not used: the files do not say which memory variant (bandwidth) was used.
  * hf-eager, hf-compiled: /work/shared/docs/h100-first-measurements.md (our own first H100 80GB HBM3
    runs): Qwen2.5-7B architecture, bf16, batch 1, prompt 128, decode 49.0 tokens/s eager and
    97.6 tokens/s with the static KV cache (compiled forward). That document states 25 % and 50 % of a
    roofline taken with ~3.0 TB/s "usable" bandwidth; here the same runs are re-expressed against the
    datasheet bandwidth of gpus.csv, like the Argonne rows.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[1]
ARGONNE_DEFAULT = Path("/work/shared/data/public/argonne-llm-inference-bench/Plots/All_results.csv")
ARGONNE_SOURCE = (
    "argonne-lcf/LLM-Inference-Bench@4211f5d4e9bc0145ed541b6d372d5d8223b44235:Plots/All_results.csv"
)
HW_TO_GPU = {"Nvidia H100 GPU": "h100-sxm"}
FRAMEWORK_TO_ENGINE = {"vLLM": "vllm", "TensorRT-LLM": "tensorrt-llm", "llama.cpp": "llama.cpp"}
HF_TO_MODEL = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "mistralai/Mistral-7B-v0.1": "mistral-7b-v0.1",
    "Qwen/Qwen2-7B": "qwen2-7b",
}
LENGTHS = (128, 256)
BYTES_PER_VALUE = 2.0  # fp16 / bf16
# hf-eager / hf-compiled: (engine, model id, decode tokens/s, prompt, new tokens) from h100-first-measurements.md
OWN_RUNS = (
    ("hf-eager", "qwen2.5-7b-instruct", 49.0, 128, 64),
    ("hf-compiled", "qwen2.5-7b-instruct", 97.6, 128, 128),
)
OWN_SOURCE = "/work/shared/docs/h100-first-measurements.md"


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _model_bytes(row: dict[str, str]) -> tuple[float, float]:
    """(weight bytes, KV bytes per context token) at 16-bit precision."""
    weights = float(row["params_b"]) * 1e9 * BYTES_PER_VALUE
    layers, kv_heads, head_dim = int(row["num_layers"]), int(row["num_kv_heads"]), int(row["head_dim"])
    return weights, 2.0 * layers * kv_heads * head_dim * BYTES_PER_VALUE


def efficiency(
    weight_bytes: float, kv_per_token: float, context: float, bandwidth_gbs: float, seconds_per_token: float
) -> float:
    t_roof = (weight_bytes + kv_per_token * context) / (bandwidth_gbs * 1e9)
    return t_roof / seconds_per_token


def compute(argonne: Path) -> dict[str, list[tuple[str, float]]]:
    models = {r["id"]: r for r in _read(CATALOG / "models.csv")}
    gpus = {r["id"]: r for r in _read(CATALOG / "gpus.csv")}
    out: dict[str, list[tuple[str, float]]] = {}
    for row in _read(argonne):
        gpu = HW_TO_GPU.get(row["Hardware"])
        eng = FRAMEWORK_TO_ENGINE.get(row["Framework"])
        mid = HF_TO_MODEL.get(row["Model"])
        length = int(row["Input Output Length"])
        if not (gpu and eng and mid) or row["Num of Hardware"] != "1" or row["Batch Size"] != "1":
            continue
        if length not in LENGTHS:
            continue
        w, kv = _model_bytes(models[mid])
        eff = efficiency(
            w, kv, 1.5 * length, float(gpus[gpu]["bandwidth_gbs"]), float(row["Latency"]) / length
        )
        out.setdefault(eng, []).append((f"{mid} L={length}", eff))
    bw = float(gpus["h100-sxm"]["bandwidth_gbs"])
    for eng, mid, tps, prompt, new in OWN_RUNS:
        w, kv = _model_bytes(models[mid])
        out.setdefault(eng, []).append((f"{mid} bf16", efficiency(w, kv, prompt + new / 2, bw, 1.0 / tps)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--argonne", type=Path, default=ARGONNE_DEFAULT, help="path to Argonne Plots/All_results.csv"
    )
    args = ap.parse_args(argv)
    if not args.argonne.exists():
        print(f"missing {args.argonne}", file=sys.stderr)
        return 2
    res = compute(args.argonne)
    print(
        f"{'engine':14s} {'n':>3s} {'median':>7s} {'min':>6s} {'max':>6s}   sources: {ARGONNE_SOURCE}; {OWN_SOURCE}"
    )
    for eng in ("hf-eager", "hf-compiled", "vllm", "tensorrt-llm", "llama.cpp"):
        vals = [v for _, v in res.get(eng, [])]
        if vals:
            print(
                f"{eng:14s} {len(vals):3d} {statistics.median(vals):7.3f} {min(vals):6.3f} {max(vals):6.3f}"
            )
    for eng, items in res.items():
        for label, v in items:
            print(f"  {eng:14s} {label:32s} {v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
