"""Fit each engine's roofline efficiency and per-token launch overhead (engines.yaml `analytic` block).

    python datasets/catalog/tools/fit_engine_overhead.py            # print the fit and write engines.yaml
    python datasets/catalog/tools/fit_engine_overhead.py --dry-run  # print only
    python datasets/catalog/tools/fit_engine_overhead.py --rows     # also every row with its fit error

The analytic model (`recommender/costmodel/analytic.py`) times one decode step of a batch-1 request as

    t_step = R_step / efficiency + overhead        R_step = max(t_mem, t_comp) of the step (roofline)

and the prefill as t_prefill = R_prefill / efficiency + overhead, with the roofline times of
`recommender.costmodel.features.physics` (weights at the method's bits with 16-bit embeddings, KV cache of
the mean decode context, the card's datasheet bandwidth and dense tensor rate of gpus.csv). Both
parameters enter linearly, so they are fitted by least squares per engine, in relative terms (every
residual divided by the measured time, so a 2 ms and a 40 ms step weigh alike):

  * rows that time the decode alone (ours: `measure` records, scope gpu-counter) give the step time
    y = batch / tokens_per_s = R_step / eff + overhead;
  * rows that time a whole request, prefill included (ML.ENERGY v1, Argonne), give per output token
    y = 1 / tokens_per_s = (R_prefill + n R_step) / (n eff) + (n + 1) / n x overhead, n = output tokens.

A negative overhead is not physical: if the free fit gives one, the overhead is fixed at 0 and only the
efficiency is fitted. Nor is an efficiency above 1 (faster than the datasheet roofline on average): if the
free fit gives one, the efficiency is fixed at 1 and only the overhead is fitted. Rows faster than the
datasheet roofline itself (measured time < roofline time, an efficiency above 1 even with no overhead) are
impossible and dropped, and listed: Argonne's GH200 vLLM
rows at input = output 2048 report ~45,000 tokens/s at batch 1, two orders of magnitude above the
neighbouring lengths. Engine -> rows (batch 1, unquantized float weights only: the efficiency is a property
of the engine's 16-bit kernels, quantized kernels have their own and are left to the learned model):

  * hf-eager: datasets/public/mlenergy_v1.csv (HF transformers via FastChat, fp16, A100 PCIe 40GB, A40,
    V100; prefill + decode metered together, prompt lengths imputed) + our H100 records
    (datasets/measurements/*/*.jsonl, engine hf-eager);
  * hf-compiled: our H100 records with engine hf-compiled (static KV cache, compiled forward);
  * vllm, tensorrt-llm, llama.cpp: datasets/public/argonne.csv (Argonne LLM-Inference-Bench, fp16,
    1 GPU: H100 SXM, A100 SXM 40GB, GH200; input = output length 128 ... 2048).

Our records: status ok only; `is_stable` ones only where an engine has at least MIN_STABLE of them
(otherwise every ok record, and the table says so); `measurement_scope: simulated` (fake meter) never.
Public rows: those without `excluded_reason`.

Writing: `roofline_efficiency` and `per_token_overhead_ms` of each fitted engine are replaced in
engines.yaml, and one sentence that starts with FIT_MARKER is appended to its `analytic.source` (a
previous one is replaced; the sentence of fit_power_model.py is kept, after it: `rewrite_analytic`), naming this script, the data files, the rows and the fit error. Comments and
every other line of the file are kept as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # run as a script from anywhere in the repo
    sys.path.insert(0, str(REPO))

CATALOG = REPO / "datasets" / "catalog"
PUBLIC = REPO / "datasets" / "public"
MEASUREMENTS = REPO / "datasets" / "measurements"
ENGINES_YAML = CATALOG / "engines.yaml"
SCRIPT = "datasets/catalog/tools/fit_engine_overhead.py"
FIT_MARKER = f"Refit by {SCRIPT}"
#: fit_power_model.py's sentence in an engine's `analytic.source`
POWER_FIT_MARKER = "Power refit by datasets/catalog/tools/fit_power_model.py"
#: the sentences fitting tools append to an engine's `analytic.source`, in the order they stand there
SOURCE_MARKERS = (FIT_MARKER, POWER_FIT_MARKER)
ENGINES = ("hf-eager", "hf-compiled", "vllm", "tensorrt-llm", "llama.cpp")
#: public file -> engines whose rows it contributes
PUBLIC_FILES = {"mlenergy_v1.csv": ("hf-eager",), "argonne.csv": ("vllm", "tensorrt-llm", "llama.cpp")}
#: our records contribute to these engines
OWN_ENGINES = ("hf-eager", "hf-compiled")
FLOAT_QUANTS = ("fp32", "fp16", "bf16")
MIN_STABLE = 3
SIMULATED_SCOPE = "simulated"


@dataclass
class Rows:
    """Parallel lists of the rows of one engine (ids resolved against the catalogue)."""

    gpu: list[str] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    quant: list[str] = field(default_factory=list)
    batch: list[float] = field(default_factory=list)
    prompt: list[float] = field(default_factory=list)
    output: list[float] = field(default_factory=list)
    kv_bits: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # measured: decode step, or whole request per output token
    e2e: list[bool] = field(default_factory=list)  # prefill included in `seconds`
    origin: list[str] = field(default_factory=list)  # data file

    def add(self, **kw) -> None:
        for k, v in kw.items():
            getattr(self, k).append(v)

    def __len__(self) -> int:
        return len(self.seconds)


@dataclass
class Fit:
    engine: str
    n: int
    by_origin: dict[str, int]
    gpus: list[str]
    efficiency: float
    overhead_ms: float
    overhead_fixed: bool  # the free fit gave a negative overhead
    efficiency_capped: bool  # the free fit gave an efficiency above 1
    median_ape_pct: float
    p80_factor: float  # exp(80th percentile of |log(predicted / measured)|)
    max_ape_pct: float
    old_efficiency: float | None
    old_median_ape_pct: float | None
    old_p80_factor: float | None
    stable_only: bool | None  # our records: stable only (None: no records of ours)
    rows: list[dict] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # rows faster than the roofline


def _catalog():
    from recommender.catalog import load_catalog_from
    from recommender.paths import catalog_dir
    from recommender.public_data import extend_catalog

    return extend_catalog(load_catalog_from(catalog_dir()), PUBLIC)


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_public(catalog, files=PUBLIC_FILES) -> tuple[dict[str, Rows], list[Path]]:
    import csv

    out: dict[str, Rows] = {}
    used = []
    for name, engines in files.items():
        path = PUBLIC / name
        if not path.exists():
            continue
        used.append(path)
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r.get("excluded_reason") or r["engine"] not in engines or r["quant"] not in FLOAT_QUANTS:
                    continue
                if _float(r["batch_size"]) != 1 or _float(r.get("num_gpus") or 1) != 1:
                    continue
                tps = _float(r["tokens_per_s"])
                if not (catalog.gpus.find(r["gpu_id"]) and catalog.models.find(r["model"]) and tps > 0):
                    continue
                out.setdefault(r["engine"], Rows()).add(
                    gpu=r["gpu_id"], model=r["model"], quant=r["quant"], batch=1.0, prompt=_float(r["prompt_tokens"]),
                    output=_float(r["output_tokens"]), kv_bits=_float(r.get("kv_cache_bits")), seconds=1.0 / tps,
                    e2e=True, origin=name)
    return out, used


def measurement_files() -> list[Path]:
    """Our record files: datasets/measurements/<card>/*.jsonl (rejected/ and raw/ lie deeper: not used)."""
    return sorted(MEASUREMENTS.glob("*/*.jsonl")) + sorted(MEASUREMENTS.glob("*.jsonl"))


def ok_records(files: list[Path]) -> Iterator[tuple[dict, Path]]:
    """(record, file) for every ok, really measured record of our JSONL files (`measurement_scope: simulated`,
    the fake meter, never); a torn or unreadable line is skipped. Shared with fit_method_overhead.py."""
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(r, dict) or r.get("status") != "ok":
                continue
            if r.get("measurement_scope") == SIMULATED_SCOPE or str(r.get("source", "")).startswith("simulated"):
                continue
            yield r, path


def read_ours(catalog, files: list[Path]) -> tuple[dict[str, Rows], dict[str, bool]]:
    """Our ok batch-1 float records per engine; stable ones only where an engine has MIN_STABLE of them."""
    recs: dict[str, list[tuple[dict, str]]] = {}
    for r, path in ok_records(files):
        if r.get("engine") not in OWN_ENGINES or r.get("quant") not in FLOAT_QUANTS or r.get("batch_size") != 1:
            continue
        gpu = catalog.gpus.find(r.get("gpu_id") or "") or catalog.gpus.find(r.get("gpu_name") or "")
        tps = _float(r.get("tokens_per_s"))
        if gpu is None or catalog.models.find(str(r.get("model"))) is None or not tps > 0:
            continue
        r = dict(r, gpu_id=gpu.id)
        recs.setdefault(r["engine"], []).append((r, f"{path.parent.name}/{path.name}"))
    out: dict[str, Rows] = {}
    stable_only: dict[str, bool] = {}
    for eng, items in recs.items():
        stable = [x for x in items if x[0].get("is_stable") is True]
        stable_only[eng] = len(stable) >= MIN_STABLE
        for r, origin in stable if stable_only[eng] else items:
            out.setdefault(eng, Rows()).add(
                gpu=r["gpu_id"], model=r["model"], quant=r["quant"], batch=1.0, prompt=float(r["prompt_tokens"]),
                output=float(r["output_tokens"]), kv_bits=float("nan"), seconds=1.0 / _float(r["tokens_per_s"]),
                e2e=False, origin=origin)
    return out, stable_only


def design(catalog, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(roofline seconds per measured unit X, overhead multiplier Z): y = X / eff + Z x overhead."""
    from recommender.candidates import Candidates
    from recommender.costmodel.features import physics

    cands = Candidates.from_ids(catalog, rows.gpu, rows.model, rows.quant, ["hf-eager"] * len(rows), rows.batch,
                                rows.prompt, rows.output)
    ph = physics(cands, np.asarray(rows.kv_bits, dtype=np.float64))
    step = np.maximum(ph.t_mem_step, ph.t_comp_step)
    pre = np.maximum(ph.t_mem_prefill, ph.t_comp_prefill)
    n = np.asarray(rows.output, dtype=np.float64)
    e2e = np.asarray(rows.e2e, dtype=bool)
    X = np.where(e2e, (pre + n * step) / n, step)
    Z = np.where(e2e, (n + 1.0) / n, 1.0)
    return X, Z


def _errors(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    ape = np.abs(pred - y) / y * 100.0
    return (float(np.median(ape)), float(np.exp(np.percentile(np.abs(np.log(pred / y)), 80))), float(ape.max()))


def fit_engine(catalog, engine: str, rows: Rows, old_eff: float | None, stable_only: bool | None) -> Fit:
    X, Z = design(catalog, rows)
    y = np.asarray(rows.seconds, dtype=np.float64)
    ok = np.isfinite(X) & np.isfinite(y) & (y >= X)
    dropped = [f"{rows.origin[i]} {rows.gpu[i]} {rows.model[i]} {rows.prompt[i]:.0f}+{rows.output[i]:.0f}: "
               f"{y[i] * 1e3:.3f} ms per token < roofline {X[i] * 1e3:.2f} ms" for i in np.flatnonzero(~ok)]
    keep = np.flatnonzero(ok)
    rows = Rows(**{k: [getattr(rows, k)[i] for i in keep] for k in rows.__dataclass_fields__})
    X, Z, y = X[keep], Z[keep], y[keep]
    A = np.stack([X / y, Z / y], axis=1)  # relative residuals: (X a + Z b - y) / y
    (a, b), *_ = np.linalg.lstsq(A, np.ones(len(y)), rcond=None)
    fixed = False
    if b < 0 or len(set(np.round(X, 12))) < 2:  # not physical, or no leverage to separate the two
        fixed = True
        b = 0.0
        a = float(np.linalg.lstsq((X / y)[:, None], np.ones(len(y)), rcond=None)[0][0])
    capped = False
    if a < 1.0:  # efficiency 1 / a above 1: the roofline's own time at most, the rest is overhead
        capped = True
        a = 1.0
        b = max(0.0, float(np.linalg.lstsq((Z / y)[:, None], 1.0 - X / y, rcond=None)[0][0]))
    pred = X * a + Z * b
    med, p80, mx = _errors(pred, y)
    old = (None, None)
    if old_eff:
        om, op, _ = _errors(X / old_eff, y)
        old = (om, op)
    by_origin: dict[str, int] = {}
    for o in rows.origin:
        by_origin[o] = by_origin.get(o, 0) + 1
    detail = [{"origin": rows.origin[i], "gpu": rows.gpu[i], "model": rows.model[i], "quant": rows.quant[i],
               "prompt": rows.prompt[i], "output": rows.output[i], "measured_ms": y[i] * 1e3,
               "fit_ms": pred[i] * 1e3, "roofline_ms": X[i] * 1e3} for i in range(len(y))]
    return Fit(engine, len(y), by_origin, sorted(set(rows.gpu)), 1.0 / a, b * 1e3, fixed, capped, med, p80, mx,
               old_eff, old[0], old[1], stable_only, detail, dropped)


def fit_all(catalog=None) -> tuple[list[Fit], list[Path]]:
    import yaml

    catalog = catalog or _catalog()
    public, used = read_public(catalog)
    own_files = measurement_files()
    ours, stable_only = read_ours(catalog, own_files)
    old = {e["id"]: (e.get("analytic") or {}).get("roofline_efficiency")
           for e in yaml.safe_load(ENGINES_YAML.read_text(encoding="utf-8"))}
    fits = []
    for eng in ENGINES:
        rows = Rows()
        for src in (public.get(eng), ours.get(eng)):
            if src is not None:
                for k in rows.__dataclass_fields__:
                    getattr(rows, k).extend(getattr(src, k))
        if len(rows) >= 3:
            fits.append(fit_engine(catalog, eng, rows, old.get(eng), stable_only.get(eng)))
    return fits, used + [p for p in own_files if any(p.name in o for f in fits for o in f.by_origin)]


# ---- engines.yaml ---------------------------------------------------------------------------------
def describe(f: Fit) -> str:
    origins = ", ".join(f"{k} {v}" for k, v in sorted(f.by_origin.items()))
    ours = ""
    if f.stable_only is not None:
        ours = (" (our records: stable ones only)" if f.stable_only else
                f" (our records: every ok record, fewer than {MIN_STABLE} are stable)")
    fixed = "; the free fit gave a negative overhead, fixed at 0" if f.overhead_fixed else ""
    if f.efficiency_capped:
        fixed += "; the free fit gave an efficiency above 1, fixed at 1"
    if f.dropped:
        fixed += (f"; {len(f.dropped)} row{'s' if len(f.dropped) > 1 else ''} faster than the datasheet roofline "
                  "dropped")
    old = ""  # (the comparison with the values it replaces is printed, not written: rerunning stays a no-op)
    return (f"{FIT_MARKER}: t_step = roofline / efficiency + overhead fitted by relative least squares to "
            f"{f.n} batch-1 unquantized rows ({origins}){ours} on {', '.join(f.gpus)}: efficiency "
            f"{f.efficiency:.3f}, overhead {f.overhead_ms:.2f} ms per step{fixed}; fit error median "
            f"{f.median_ape_pct:.1f} %, 80th-percentile factor {f.p80_factor:.2f}, max {f.max_ape_pct:.0f} %{old}.")


def _wrap(text: str, indent: str, width: int = 110) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def rewrite_analytic(text: str, fits: dict, edit_line, marker: str, describe_fit) -> str:
    """engines.yaml `text` with the `analytic` block of every engine in `fits` (engine id -> fit) rewritten:
    `edit_line(fit, line)` gives the lines that replace each of its lines (`[line]` keeps it), and the sentence
    of its `source` that starts with `marker` (one of SOURCE_MARKERS) becomes `describe_fit(fit)`. Every other
    line is kept. Shared by this script and fit_power_model.py, which edit the same blocks."""
    lines = text.split("\n")
    out: list[str] = []
    engine = section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        i += 1
        if line.startswith("- id:"):
            engine, section = stripped.split(":", 1)[1].strip(), None
        elif line.startswith("  ") and not line.startswith("   ") and ":" in stripped:
            section = stripped.split(":", 1)[0]  # the engine's key this line opens (analytic, hardware ...)
        f = fits.get(engine) if section == "analytic" else None
        if f is None:
            out.append(line)
        elif line.startswith("    source:"):
            block: list[str] = []  # the folded scalar: the lines indented deeper than `source:`
            while i < len(lines) and lines[i].startswith("      ") and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += [line, *_replace_sentence(block, marker, describe_fit(f))]
        else:
            out += edit_line(f, line)
    return "\n".join(out)


def _replace_sentence(block: list[str], marker: str, sentence: str) -> list[str]:
    """A `source` block with the tools' sentence that starts with `marker` replaced by `sentence` (added if
    absent): the hand-written text first, then the tools' sentences in SOURCE_MARKERS order, each running from
    the line its marker starts to the next marker."""
    prefix: list[str] = []
    sentences: dict[str, list[str]] = {}
    current = None
    for b in block:
        current = next((m for m in SOURCE_MARKERS if b.strip().startswith(m)), current)
        if current is None:
            prefix.append(b)
        else:
            sentences.setdefault(current, []).append(b)
    indent = prefix[0][: len(prefix[0]) - len(prefix[0].lstrip())] if prefix else "      "
    sentences[marker] = _wrap(sentence, indent)
    return prefix + [b for m in SOURCE_MARKERS for b in sentences.get(m, [])]


def update_yaml(text: str, fits: list[Fit]) -> str:
    """engines.yaml with the fitted values and descriptions; every other line unchanged."""
    def edit(f: Fit, line: str) -> list[str]:
        stripped = line.strip()
        if stripped.startswith("roofline_efficiency:"):
            return [line[: line.index("roofline_efficiency:")] + f"roofline_efficiency: {f.efficiency:.3f}"]
        if stripped.startswith("per_token_overhead_ms:"):
            return [line[: line.index("per_token_overhead_ms:")] + f"per_token_overhead_ms: {f.overhead_ms:.2f}"]
        return [line]

    return rewrite_analytic(text, {f.engine: f for f in fits}, edit, FIT_MARKER, describe)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the fit, do not write engines.yaml")
    ap.add_argument("--rows", action="store_true", help="print every row with its fitted time")
    args = ap.parse_args(argv)
    fits, files = fit_all()
    print("data: " + ", ".join(str(p.relative_to(REPO)) for p in files))
    print(f"{'engine':13s} {'rows':>4s} {'efficiency':>10s} {'overhead ms':>11s} {'median err %':>12s} "
          f"{'p80 factor':>10s} {'max err %':>9s}   engines.yaml's efficiency now, with no overhead: median err %, "
          "p80 factor")
    for f in fits:
        prev = (f"{f.old_efficiency}, {f.old_median_ape_pct:.1f}, {f.old_p80_factor:.2f}"
                if f.old_median_ape_pct is not None else "-")
        print(f"{f.engine:13s} {f.n:4d} {f.efficiency:10.3f} {f.overhead_ms:11.2f} {f.median_ape_pct:12.1f} "
              f"{f.p80_factor:10.2f} {f.max_ape_pct:9.0f}   {prev}"
              + ("   (overhead fixed at 0)" if f.overhead_fixed else "")
              + ("   (efficiency fixed at 1)" if f.efficiency_capped else ""))
        print(f"{'':13s} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(f.by_origin.items()))
              + f"; GPUs: {', '.join(f.gpus)}"
              + ("" if f.stable_only is None else
                 "; ours: stable only" if f.stable_only else f"; ours: all ok (< {MIN_STABLE} stable)"))
        for d in f.dropped:
            print(f"{'':13s} dropped (faster than the roofline): {d}")
        if args.rows:
            for r in f.rows:
                print(f"    {r['origin']:28s} {r['gpu']:15s} {r['model']:28s} {r['quant']:5s} "
                      f"{r['prompt']:6.0f}+{r['output']:<6.0f} measured {r['measured_ms']:8.2f} ms  "
                      f"fit {r['fit_ms']:8.2f} ms  roofline {r['roofline_ms']:7.2f} ms")
    if not args.dry_run:
        text = ENGINES_YAML.read_text(encoding="utf-8")
        new = update_yaml(text, fits)
        if new != text:
            ENGINES_YAML.write_text(new, encoding="utf-8")
            print(f"wrote {ENGINES_YAML.relative_to(REPO)}")
        else:
            print(f"{ENGINES_YAML.relative_to(REPO)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
