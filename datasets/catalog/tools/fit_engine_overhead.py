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

Our records: status ok only; decode-stable ones only (`is_stable`, or flagged only for a power cap that held no
repetition's decode more than 5 % of its time: `measure.meter.base.decode_is_stable`) where an engine has at
least MIN_STABLE of them
(otherwise every ok record, and the table says so); `measurement_scope: simulated` (fake meter) never.
Public rows: those without `excluded_reason`.

Writing: `roofline_efficiency` and `per_token_overhead_ms` of each fitted engine are replaced in
engines.yaml, and one sentence that starts with FIT_MARKER is appended to its `analytic.source` (a
previous one is replaced; the sentence of fit_power_model.py is kept, after it: `rewrite_analytic`), naming this script, the data files, the rows and the fit error. Comments and
every other line of the file are kept as they are.

The reading and fitting live in recommender/costmodel/engine_overhead.py, which the trainer also uses to
refit these constants inside every cross-validation fold (recommender/costmodel/engine_constants.py);
this script adds the paths of this checkout, the printed table and the engines.yaml rewriting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
PREFILL_FIT_MARKER = "Prefill refit by datasets/catalog/tools/fit_prefill_model.py"
#: the sentences fitting tools append to an engine's `analytic.source`, in the order they stand there
SOURCE_MARKERS = (FIT_MARKER, POWER_FIT_MARKER, PREFILL_FIT_MARKER)
# the fitting core lives in the package (the trainer refits it inside every cross-validation fold)
from recommender.costmodel.engine_overhead import (  # noqa: E402,F401  (re-exported: tests and fit_power_model.py)
    ENGINES,
    FLOAT_QUANTS,
    MIN_FIT_ROWS,
    MIN_STABLE,
    OWN_ENGINES,
    PUBLIC_FILES,
    SIMULATED_SCOPE,
    Fit,
    Rows,
    _float,
    design,
    engine_rows,
    fit_engine,
    ok_records,
    read_ours,
)
from recommender.costmodel.engine_overhead import errors as _errors  # noqa: E402,F401


def _catalog():
    from recommender.catalog import load_catalog_from
    from recommender.paths import catalog_dir
    from recommender.public_data import extend_catalog

    return extend_catalog(load_catalog_from(catalog_dir()), PUBLIC)


def read_public(catalog, files=PUBLIC_FILES) -> tuple[dict[str, Rows], list[Path]]:
    """`engine_overhead.read_public` on this checkout's datasets/public."""
    from recommender.costmodel import engine_overhead

    return engine_overhead.read_public(catalog, PUBLIC, files)


def measurement_files() -> list[Path]:
    """Our record files: datasets/measurements/<card>/*.jsonl (rejected/ and raw/ lie deeper: not used)."""
    from recommender.costmodel import engine_overhead

    return engine_overhead.measurement_files(MEASUREMENTS)


def fit_all(catalog=None) -> tuple[list[Fit], list[Path]]:
    import yaml

    catalog = catalog or _catalog()
    public, used = read_public(catalog)
    own_files = measurement_files()
    ours, stable_only = read_ours(catalog, own_files)
    old = {e["id"]: (e.get("analytic") or {}).get("roofline_efficiency")
           for e in yaml.safe_load(ENGINES_YAML.read_text(encoding="utf-8"))}
    fits = [fit_engine(catalog, eng, rows, old.get(eng), stable_only.get(eng))
            for eng, rows in engine_rows(public, ours).items() if len(rows) >= MIN_FIT_ROWS]
    return fits, used + [p for p in own_files if any(p.name in o for f in fits for o in f.by_origin)]


# ---- engines.yaml ---------------------------------------------------------------------------------
def describe(f: Fit) -> str:
    origins = ", ".join(f"{k} {v}" for k, v in sorted(f.by_origin.items()))
    ours = ""
    if f.stable_only is not None:
        ours = (" (our records: decode-stable ones only)" if f.stable_only else
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
    line is kept. Shared by this script, fit_power_model.py and fit_prefill_model.py, which edit the same blocks."""
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
                 "; ours: decode-stable only" if f.stable_only else f"; ours: all ok (< {MIN_STABLE} stable)"))
        for d in f.dropped:
            print(f"{'':13s} dropped (faster than the roofline): {d}")
        if args.rows:
            for r in f.rows:
                print(f"    {r['origin']:28s} {r['gpu']:15s} {r['model']:28s} {r['quant']:5s} "
                      f"{r['prompt']:6.0f}+{r['output']:<6.0f} measured {r['measured_ms']:8.2f} ms  "
                      f"fit {r['fit_ms']:8.2f} ms  roofline {r['roofline_ms']:7.2f} ms")
    if not args.dry_run:
        write_engines_yaml(update_yaml, fits)
    return 0


def run_fit_tool(doc: str, fit_all, header: str, line, update, argv: list[str] | None = None) -> int:
    """The command line of fit_power_model.py and fit_prefill_model.py: fit (`fit_all()`), print `header` and
    `line(fit)` per fit, and unless --dry-run rewrite engines.yaml with `update(text, fits)`."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the fit, do not write engines.yaml")
    args = ap.parse_args(argv)
    fits = fit_all()
    print(header)
    for f in fits:
        print(line(f))
    if not args.dry_run:
        write_engines_yaml(update, fits)
    return 0


def write_engines_yaml(update, fits) -> None:
    """Rewrite engines.yaml with `update(text, fits)` (this tool's or fit_power_model's `update_yaml`) and say
    whether it changed."""
    text = ENGINES_YAML.read_text(encoding="utf-8")
    new = update(text, fits)
    if new != text:
        ENGINES_YAML.write_text(new, encoding="utf-8")
        print(f"wrote {ENGINES_YAML.relative_to(REPO)}")
    else:
        print(f"{ENGINES_YAML.relative_to(REPO)} unchanged")


if __name__ == "__main__":
    sys.exit(main())
