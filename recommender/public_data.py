"""Adapters: third-party measurements (shared/data/public) -> datasets/public/*.csv in our record's field names.

    python -m recommender.public_data --src /work/shared/data/public --out datasets/public

Every output row keeps `source` (repository@commit:path from PROVENANCE.tsv), `licence`, a
`measurement_scope` sentence and a `scope_id` (a key of `costmodel.features.SCOPES`). Rows whose meaning
is uncertain are written to `excluded.csv` with an `excluded_reason`, never dropped: every source row
lands in exactly one output file (the test suite checks the counts).

Field meanings (units in names, as in measure/record.py):
- `energy_per_token_j`: GPU energy of the whole generate call (prefill + decode) / output tokens, the
  public datasets' scope; `decode_energy_per_token_j` stays empty (they do not separate the decode).
- `tokens_per_s`: output tokens / wall time of the call (prefill included) for the whole batch.
- `batch_size`: requests decoded together (ML.ENERGY v2: the average running batch, a float).
- `prompt_tokens`: as reported; ShareGPT-based rows (ML.ENERGY) do not report it: imputed to 161, the
  mean ShareGPT input length in Kwon et al., "Efficient Memory Management for LLM Serving with
  PagedAttention", SOSP 2023, Fig. 11 (flagged in `notes`).

This module is run by a developer when the public data change; `recommend` never imports it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

from recommender.catalog import Catalog, Model, _from_row, _read_csv, load_catalog

COLUMNS = (
    "row_id", "dataset", "gpu_name", "gpu_id", "model", "model_name_source", "quant", "engine", "batch_size",
    "prompt_tokens", "output_tokens", "tokens_per_s", "tpot_ms", "decode_energy_per_token_j",
    "energy_per_token_j", "ttft_ms", "avg_power_w", "duration_s", "kv_cache_bits", "num_gpus", "task",
    "measurement_scope", "scope_id", "source", "licence", "notes", "excluded_reason",
)
OUTPUTS = ("mlenergy_v1.csv", "mlenergy_v2.csv", "argonne.csv")
EXCLUDED = "excluded.csv"
PUBLIC_MODELS = "public_models.csv"

SHAREGPT_MEAN_PROMPT = 161  # Kwon et al. SOSP 2023 (vLLM), Fig. 11: ShareGPT mean input length 161.31
_IMPUTED = ("prompt_tokens imputed: 161 = mean ShareGPT input length (Kwon et al., SOSP 2023, Fig. 11); "
            "the source does not report prompt lengths")

SCOPE_TEXT = {
    "mlenergy-v1": ("gpu-counter (Zeus, NVML energy counter), idle included, whole response (prefill + "
                    "decode), HF transformers via FastChat, batch 1, fp16"),
    "mlenergy-v2": ("gpu-counter (Zeus, NVML energy counter), idle included, vLLM 0.5.4 OpenAI-server serving "
                    "ShareGPT, prefill + decode, batch = average running batch"),
    "argonne": ("one static batch timed end to end (prefill + decode), input length = output length; "
                "power (where present) = mean of NVML power polled every 0.25 s (the vLLM H100 script also "
                "sleeps 1 s before and after the timed generate), GPU 0 only"),
}

#: Public model names that are fine-tunes of an architecture row (catalogue or public_models.csv):
#: name -> (architecture id, why). Energy and speed depend on the architecture, not on the weights.
FINETUNE_OF = {
    "lmsys/vicuna-7B": ("llama-7b", "Vicuna-7B: fine-tune of LLaMA-7B (lmsys.org/blog/2023-03-30-vicuna)"),
    "lmsys/vicuna-13B": ("llama-13b", "Vicuna-13B: fine-tune of LLaMA-13B (lmsys.org/blog/2023-03-30-vicuna)"),
    "tatsu-lab/alpaca-7B": ("llama-7b", "Alpaca-7B: fine-tune of LLaMA-7B (crfm.stanford.edu/2023/03/13/alpaca)"),
    "BAIR/koala-7b": ("llama-7b", "Koala-7B: fine-tune of LLaMA-7B (bair.berkeley.edu/blog/2023/04/03/koala)"),
    "BAIR/koala-13b": ("llama-13b", "Koala-13B: fine-tune of LLaMA-13B (bair.berkeley.edu/blog/2023/04/03/koala)"),
    "project-baize/baize-v2-7B": ("llama-7b", "Baize v2 7B: fine-tune of LLaMA-7B (Baize model card)"),
    "nomic-ai/gpt4all-13b-snoozy": ("llama-13b", "GPT4All-13B-snoozy: fine-tune of LLaMA-13B (model card)"),
    "openaccess-ai-collective/manticore-13b-chat-pyg": ("llama-13b", "Manticore 13B: fine-tune of LLaMA-13B (model card)"),
    "camel-ai/CAMEL-13B-Combined-Data": ("llama-13b", "CAMEL-13B: fine-tune of LLaMA-13B (model card)"),
    "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-7b-preview-300bt-v2": (
        "llama-7b", "fine-tune of OpenLLaMA 7B, a reproduction with the LLaMA-7B architecture (model card)"),
    "FreedomIntelligence/phoenix-inst-chat-7b": ("bloomz-7b1", "Phoenix: fine-tune of BLOOMZ-7b1 (model card)"),
    "metaai/Llama-2-13b-chat-hf": ("llama-2-13b", "Llama 2 13B chat: same architecture as Llama 2 13B"),
    "metaai/Llama-2-7b-chat-hf": ("llama-2-7b-chat", "Llama 2 7B chat"),
    "meta-llama/Llama-2-13b-chat-hf": ("llama-2-13b", "Llama 2 13B chat: same architecture as Llama 2 13B"),
    "bigscience/bloom-7b1": ("bloomz-7b1", "BLOOM-7b1: BLOOMZ-7b1 is its fine-tune, same architecture"),
    "google/codegemma-7b": ("gemma-7b", "CodeGemma 7B uses the Gemma 7B architecture (CodeGemma model card)"),
    "google/codegemma-1.1-2b": ("gemma-2b", "CodeGemma 1.1 2B uses the Gemma 2B architecture (CodeGemma model card)"),
    "huggyllama/llama-7b": ("llama-7b", "LLaMA-7B"),
}

#: Public model names left out on purpose: name -> reason.
MODEL_EXCLUDED = {
    "RWKV/rwkv-raven-7b": "RWKV is a recurrent architecture: the transformer roofline features do not apply",
    "lmsys/fastchat-t5-3b-v1.0": "encoder-decoder (T5): not modelled",
    "mistralai/Mixtral-8x7B-v0.1": "mixture-of-experts: per-token active weights are not modelled",
    "Deci/DeciLM-7B": "variable grouped-query attention per layer: not modelled",
    "Neutralzz/BiLLa-7B-SFT": "extended vocabulary of unknown size (config not verified offline)",
    "databricks/dolly-v2-12b": "Pythia-12B vocabulary padding not verified offline: shape not catalogued",
    "OpenAssistant/oasst-sft-1-pythia-12b": "Pythia-12B vocabulary padding not verified offline: shape not catalogued",
    "microsoft/Phi-3-small-8k-instruct": "block-sparse attention layers and fused gegelu MLP: not modelled",
}

#: Engine names in the public data -> catalogue engine ids (None: not in the catalogue).
ENGINES = {"vLLM": "vllm", "TensorRT-LLM": "tensorrt-llm", "llama.cpp": "llama.cpp",
           "Deepspeed-MII": None, "Deepspeed": None, "sambaflow": None}

#: Argonne hardware names -> (catalogue GPU id, why this variant).
ARGONNE_GPUS = {
    "Nvidia A100 GPU": ("a100-sxm-40gb", "A100 variant not named; SXM4 40GB because its measured mean power "
                        "reaches 382 W (Fig_16), above the 250-300 W limits of the PCIe A100s, and ALCF "
                        "Polaris nodes carry A100 SXM4 40GB"),
    "Nvidia H100 GPU": ("h100-sxm", "H100 variant not named; SXM because its measured mean power reaches 595 W "
                        "(Fig_16), above the 350 W limit of the H100 PCIe"),
    "Nvidia GH200 GPU": ("gh200", ""),
}
#: ML.ENERGY v1 GPU folder names -> (catalogue id, why).
V1_GPUS = {
    "A100": ("a100-pcie-40gb", "v1 names only 'A100': the catalogue alias 'a100' (PCIe 40GB); the SXM4 40GB "
             "has the same memory, bandwidth and tensor rates (TDP 400 W vs 250 W)"),
    "A40": ("a40", ""),
    "V100": ("v100-32gb", "v1 names only 'V100': the catalogue alias 'v100' (SXM2 32GB)"),
}


class Provenance:
    """PROVENANCE.tsv: local path -> (repo@commit:path, licence)."""

    def __init__(self, src: Path):
        self.rows: dict[str, tuple[str, str]] = {}
        with (src / "PROVENANCE.tsv").open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                cite = f"{row['repo']}@{row['snapshot_commit']}:{row['repo_path']}"
                self.rows[row["local_path"]] = (cite, row["license"].split(" (")[0])

    def __call__(self, local: str) -> tuple[str, str]:
        if local not in self.rows:
            raise KeyError(f"{local} is not listed in PROVENANCE.tsv")
        return self.rows[local]


def public_models(folder: Path) -> list[Model]:
    return [_from_row(Model, r) for r in _read_csv(folder / PUBLIC_MODELS)]


def extend_catalog(catalog: Catalog, folder: Path) -> Catalog:
    """Add public_models.csv rows the catalogue lacks (the trainer calls this)."""
    for m in public_models(folder):
        if catalog.models.find(m.id) is None:
            catalog.models.add(m)
    return catalog


class _Resolver:
    def __init__(self, catalog: Catalog, models_dir: Path):
        self.catalog = extend_catalog(catalog, models_dir)

    def model(self, name: str) -> tuple[str | None, str, str]:
        """(model id or None, note, excluded reason)."""
        if name in MODEL_EXCLUDED:
            return None, "", MODEL_EXCLUDED[name]
        if name in FINETUNE_OF:
            arch, why = FINETUNE_OF[name]
            if self.catalog.models.find(arch) is None:
                return None, "", f"architecture {arch!r} of {name} is not catalogued"
            return self.catalog.models.find(arch).id, why, ""
        m = self.catalog.models.find(name)
        if m is None:
            return None, "", "model shape not in models.csv or public_models.csv"
        return m.id, "", ""

    def engine(self, name: str) -> tuple[str | None, str]:
        """A public engine name (e.g. 'vLLM') -> catalogue id."""
        eid = ENGINES.get(name)
        if eid is None:
            return None, f"engine {name!r} is not in the engine catalogue"
        return self.engine_id(eid)

    def engine_id(self, eid: str) -> tuple[str | None, str]:
        if self.catalog.engines.find(eid) is None:
            return None, f"engine {eid!r} is not in engines.yaml"
        return self.catalog.engines.find(eid).id, ""

    def quant(self, qid: str) -> tuple[str | None, str]:
        if self.catalog.quants.find(qid) is None:
            return None, f"quantization {qid!r} is not in quants.yaml"
        return self.catalog.quants.find(qid).id, ""


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return repr(round(v, 6)) if abs(v) >= 1e-3 else f"{v:.6g}"
    return str(v)


def _row(**kw) -> dict[str, str]:
    unknown = set(kw) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown public-data columns {sorted(unknown)}")
    return {c: _fmt(kw.get(c)) for c in COLUMNS}


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# ---- ML.ENERGY v1 (legacy leaderboard, 2023) -----------------------------------------------------
def mlenergy_v1(src: Path, prov: Provenance, res: _Resolver) -> list[dict[str, str]]:
    folder = "ml-energy-leaderboard-v2/data/legacy"
    out = []
    qid, qreason = res.quant("fp16")
    eid, ereason = res.engine_id("hf-eager")
    for path in sorted((src / folder).glob("*_benchmark.csv")):
        gpu, task = path.name.removesuffix("_benchmark.csv").split("_", 1)
        cite, licence = prov(f"{folder}/{path.name}")
        gpu_id, gpu_note = V1_GPUS.get(gpu, (None, ""))
        with path.open(newline="", encoding="utf-8") as fh:
            for i, r in enumerate(csv.DictReader(fh)):
                mid, mnote, mreason = res.model(r["model"])
                out_tok = _num(r["response_length"])
                energy = _num(r["energy"])
                reason = mreason or qreason or ereason or ("" if gpu_id else f"GPU {gpu!r} not mapped")
                out.append(_row(
                    row_id=f"mlenergy-v1:{gpu}:{task}:{i}", dataset="mlenergy-v1", gpu_name=gpu, gpu_id=gpu_id,
                    model=mid, model_name_source=r["model"], quant=qid, engine=eid, batch_size=1,
                    prompt_tokens=SHAREGPT_MEAN_PROMPT, output_tokens=out_tok, tokens_per_s=_num(r["throughput"]),
                    energy_per_token_j=energy / out_tok, avg_power_w=energy / _num(r["latency"]),
                    duration_s=_num(r["latency"]), num_gpus=1, task=task,
                    measurement_scope=SCOPE_TEXT["mlenergy-v1"], scope_id="mlenergy-v1", source=cite,
                    licence=licence, notes=_join(_IMPUTED, mnote, gpu_note,
                                                 "setup: ml-energy/leaderboard-v2 docs/leaderboard.md (batch 1, FP16)"),
                    excluded_reason=reason))
    return out


# ---- ML.ENERGY v2 (vLLM serving, 2024) ---------------------------------------------------------
def mlenergy_v2(src: Path, prov: Provenance, res: _Resolver) -> list[dict[str, str]]:
    folder = "ml-energy-leaderboard-v2/data/llm_text_generation"
    out = []
    qid, qreason = res.quant("bf16")
    eid, ereason = res.engine_id("vllm")
    for path in sorted((src / folder).glob("*/*/*/*/*.json")):
        rel = path.relative_to(src).as_posix()
        task = path.relative_to(src / folder).parts[0]
        cite, licence = prov(rel)
        d = json.loads(path.read_text(encoding="utf-8"))
        gpu = res.catalog.gpus.find(d["GPU"])
        mid, mnote, mreason = res.model(d["Model"])
        tp, pp = int(d.get("TP", 1)), int(d.get("PP", 1))
        reason = ""
        if tp * pp > 1:
            reason = (f"served on {tp * pp} GPUs (tensor parallel {tp}, pipeline {pp}): candidates are single-GPU "
                      "deployments and no per-GPU split of energy or throughput is exact under TP communication")
        reason = reason or mreason or qreason or ereason or ("" if gpu else f"GPU {d['GPU']!r} not in gpus.csv")
        out_tok = _num(d["Avg Output Tokens"])
        out.append(_row(
            row_id=f"mlenergy-v2:{rel.split('llm_text_generation/')[1]}", dataset="mlenergy-v2", gpu_name=d["GPU"],
            gpu_id=gpu.id if gpu else None, model=mid, model_name_source=d["Model"], quant=qid, engine=eid,
            batch_size=_num(d["Avg BS (reqs)"]), prompt_tokens=SHAREGPT_MEAN_PROMPT, output_tokens=out_tok,
            tokens_per_s=_num(d["Token tput (tok/s)"]), tpot_ms=_num(d["Avg TPOT (s)"]) * 1e3,
            energy_per_token_j=_num(d["Energy/req (J)"]) / out_tok,
            avg_power_w=_num(d["Energy/req (J)"]) / out_tok * _num(d["Token tput (tok/s)"]),
            num_gpus=tp * pp, task=task, measurement_scope=SCOPE_TEXT["mlenergy-v2"], scope_id="mlenergy-v2",
            source=cite, licence=licence,
            notes=_join(_IMPUTED, mnote, f"max batch size {d.get('Max BS (reqs)')}; bf16 per the public data README"),
            excluded_reason=reason))
    return out


# ---- Argonne LLM-Inference-Bench -----------------------------------------------------------------
def argonne(src: Path, prov: Provenance, res: _Resolver) -> list[dict[str, str]]:
    folder = "argonne-llm-inference-bench/Plots"
    out: list[dict[str, str]] = []
    qfp16, qreason = res.quant("fp16")

    def common(r: dict, gpu_key: str, fw: str, model: str, n_hw: int) -> tuple[dict, list[str]]:
        gpu_id, gnote = ARGONNE_GPUS.get(gpu_key, (None, ""))
        if gpu_id is not None and res.catalog.gpus.find(gpu_id) is None:
            gpu_id = None
        eid, ereason = res.engine(fw)
        mid, mnote, mreason = res.model(model)
        reasons = []
        if n_hw > 1:
            reasons.append(f"run on {n_hw} accelerators (tensor parallel): candidates are single-GPU deployments")
        if gpu_id is None:
            reasons.append(f"{gpu_key}: not an NVIDIA GPU of the catalogue (the features cover NVIDIA cards)")
        reasons += [x for x in (ereason, mreason) if x]
        return dict(gpu_name=gpu_key, gpu_id=gpu_id, model=mid, model_name_source=model, engine=eid, num_gpus=n_hw,
                    measurement_scope=SCOPE_TEXT["argonne"], scope_id="argonne"), [_join(mnote, gnote), *reasons]

    # All_results.csv (+ power from Fig_16_a_b/power_results.csv, the same runs: equal latency)
    cite_all, licence = prov(f"{folder}/All_results.csv")
    cite_pow, _ = prov(f"{folder}/Fig_16_a_b/power_results.csv")
    power: dict[tuple, float] = {}
    for r in _csv(src / folder / "Fig_16_a_b/power_results.csv"):
        power[_akey(r) + (round(_num(r["Latency"]), 9),)] = _num(r["avg_power"]) / 1e3  # mW -> W
    matched = set()
    for i, r in enumerate(_csv(src / folder / "All_results.csv")):
        base, notes = common(r, r["Hardware"], r["Framework"], r["Model"], int(r["Num of Hardware"]))
        n, batch, lat = _num(r["Input Output Length"]), _num(r["Batch Size"]), _num(r["Latency"])
        ratio = _num(r["Throughput"]) * lat / (batch * n)
        if abs(ratio - 2.0) > 1e-3:
            notes.append(f"Throughput x Latency = {ratio:.3g} x batch x length, not 2 (input + output tokens): "
                         "this row's throughput definition is unclear")
        key = _akey(r) + (round(lat, 9),)
        pw = power.get(key)
        if pw is not None:
            matched.add(key)
        reason = _join(*notes[1:]) or qreason
        out.append(_row(
            row_id=f"argonne:All_results:{i}", dataset="argonne", quant=qfp16, batch_size=batch, prompt_tokens=n,
            output_tokens=n, tokens_per_s=batch * n / lat, duration_s=lat, avg_power_w=pw,
            energy_per_token_j=None if pw is None else pw * lat / (batch * n), kv_cache_bits=16.0, task="All_results",
            source=cite_all if pw is None else f"{cite_all} + {cite_pow}", licence=licence,
            notes=_join(notes[0], "16-bit weights (vLLM dtype auto; the source labels them fp16)",
                        "tokens_per_s = batch x output / Latency" + ("" if pw is None else
                                                                     "; energy = avg_power (mW -> W) x Latency")),
            excluded_reason=reason, **base))
    unmatched = [k for k in power if k not in matched]
    if unmatched:
        raise ValueError(f"{len(unmatched)} Argonne power rows match no All_results.csv row: {unmatched[:3]}")

    # Fig_3: weight / KV-cache dtypes, Llama-3-8B on A100 and H100 (separate runs from All_results)
    cite3, _ = prov(f"{folder}/Fig_3/A100_H100_quant_all_results.csv")
    for i, r in enumerate(_csv(src / folder / "Fig_3/A100_H100_quant_all_results.csv")):
        base, notes = common(r, r["Hardware"], r["Framework"], r["Model"], int(r["Num of Hardware"]))
        label = r["kv_cache_dtype"]
        wdt = label.split("Weight = ")[1].split(",")[0].strip()
        kdt = label.split("KV Cache = ")[1].strip()
        # equivalent schemes of our catalogue: fp8 W8A8 dynamic = torchao-fp8; int8 weight-only = torchao-int8-wo
        qmap = {"fp16": ("fp16", ""),
                "fp8": ("torchao-fp8", "fp8 weights + dynamic fp8 activations (vLLM/TRT-LLM), mapped to the "
                        "equivalent scheme torchao-fp8; the engine column keeps the implementation"),
                "int8": ("torchao-int8-wo", "int8 weight-only (TensorRT-LLM), mapped to the equivalent scheme "
                         "torchao-int8-wo; the engine column keeps the implementation")}
        qid, qnote = qmap[wdt]
        qid2, qreason2 = res.quant(qid)
        n, batch, lat = _num(r["Input Output Length"]), _num(r["Batch Size"]), _num(r["latency"])
        gpu = res.catalog.gpus.find(base["gpu_id"]) if base["gpu_id"] else None
        if kdt == "fp8" and gpu is not None and (gpu.compute_capability or 0) < 8.9:
            notes.append("fp8 KV cache on a card without fp8 hardware (emulated): these runs are 1.2-5.4x slower "
                         "than the fp16-KV (vLLM) or int8-KV (TensorRT-LLM) runs beside them, an effect outside the candidate space (the KV-cache "
                         "dtype is not a candidate dimension)")
        out.append(_row(
            row_id=f"argonne:Fig_3:{i}", dataset="argonne", quant=qid2, batch_size=batch, prompt_tokens=n,
            output_tokens=n, tokens_per_s=batch * n / lat, duration_s=lat,
            kv_cache_bits={"fp16": 16.0, "fp8": 8.0, "int8": 8.0}[kdt], task=f"Fig_3: {label}", source=cite3,
            licence=licence, notes=_join(notes[0], qnote, f"KV cache {kdt}", "tokens_per_s = batch x output / latency"),
            excluded_reason=_join(*notes[1:]) or qreason2, **base))

    # Fig_21: time to first token (1,024 input tokens, 1 output token, batch 16)
    cite21, _ = prov(f"{folder}/Fig_21/all_results_TTFT.csv")
    for i, r in enumerate(_csv(src / folder / "Fig_21/all_results_TTFT.csv")):
        base, notes = common(r, r["Hardware"], r["Framework"], r["Model"], int(r["Num of Hardware"]))
        out.append(_row(
            row_id=f"argonne:Fig_21:{i}", dataset="argonne", quant=qfp16, batch_size=_num(r["Batch Size"]),
            prompt_tokens=_num(r["Input Length"]), output_tokens=_num(r["Output Length"]),
            ttft_ms=_num(r["Latency"]) * 1e3, duration_s=_num(r["Latency"]), kv_cache_bits=16.0, task="Fig_21 TTFT",
            source=cite21, licence=licence,
            notes=_join(notes[0], "ttft_ms = Latency of a 1-token generate of the batch (prefill of all 16 prompts)"),
            excluded_reason=_join(*notes[1:]) or qreason, **base))
    return out


def _akey(r: dict) -> tuple:
    return (r["Hardware"], r["Num of Hardware"], r["Framework"], r["Model"], r["Input Output Length"], r["Batch Size"])


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if any((v or "").strip() for v in r.values())]


ADAPTERS = {"mlenergy_v1.csv": mlenergy_v1, "mlenergy_v2.csv": mlenergy_v2, "argonne.csv": argonne}


def build(src: Path, out: Path, catalog: Catalog | None = None) -> dict[str, dict[str, int]]:
    """Write every adapter's kept rows to out/<name> and all excluded rows to out/excluded.csv."""
    prov = Provenance(src)
    res = _Resolver(catalog or load_catalog(), out)
    excluded: list[dict[str, str]] = []
    counts = {}
    for name, adapter in ADAPTERS.items():
        rows = adapter(src, prov, res)
        for r in rows:
            if not r["excluded_reason"]:
                r["excluded_reason"] = _beyond_roofline(r, res.catalog) or ""
        kept = [r for r in rows if not r["excluded_reason"]]
        excluded += [r for r in rows if r["excluded_reason"]]
        _write(out / name, kept)
        counts[name] = {"source_rows": len(rows), "kept": len(kept), "excluded": len(rows) - len(kept)}
    _write(out / EXCLUDED, excluded)
    return counts


def _beyond_roofline(row: dict[str, str], catalog: Catalog) -> str | None:
    """A reason when a row's decode throughput beats reading the weights (at the method's bits) once per step
    at the card's datasheet bandwidth: impossible for a dense model, so the row's meaning is uncertain."""
    try:
        gpu, model = catalog.gpus.find(row.get("gpu_id") or ""), catalog.models.find(row.get("model") or "")
        tps, batch = float(row["tokens_per_s"]), float(row["batch_size"])
    except (KeyError, TypeError, ValueError):
        return None
    quant = catalog.quants.find(row.get("quant") or "")
    bits = quant.weight_bits if quant is not None and quant.weight_bits else 16.0
    if gpu is None or model is None or not gpu.bandwidth_gbs or not model.params_b:
        return None
    limit = batch * gpu.bandwidth_gbs * 1e9 / (model.params_b * 1e9 * bits / 8)
    if tps > limit:
        return (f"{tps:.0f} tokens/s exceeds the bandwidth roofline of {limit:.0f} tokens/s ({bits:g}-bit weights "
                f"read once per decode step at {gpu.bandwidth_gbs:.0f} GB/s): not physically possible for one card")
    return None


def _write(path: Path, rows: Iterable[dict[str, str]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def read_rows(folder: Path, include_excluded: bool = False) -> list[dict[str, str]]:
    """Rows of the imported public CSVs (kept rows only unless `include_excluded`)."""
    rows = []
    names = list(OUTPUTS) + ([EXCLUDED] if include_excluded else [])
    for name in names:
        rows += _read_csv(folder / name)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="import shared/data/public into datasets/public")
    ap.add_argument("--src", type=Path, default=Path("/work/shared/data/public"))
    ap.add_argument("--out", type=Path, default=None, help="default: datasets/public of this checkout")
    args = ap.parse_args(argv)
    from recommender.paths import data_root

    out = args.out or data_root() / "public"
    out.mkdir(parents=True, exist_ok=True)
    counts = build(args.src, out)
    for name, c in counts.items():
        print(f"{name:18s} {c['source_rows']:5d} source rows  {c['kept']:5d} kept  {c['excluded']:5d} excluded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
