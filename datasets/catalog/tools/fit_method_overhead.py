"""Fit each quantization method's decode overhead per layer and prefill time ratio per engine (method_overhead.csv).

    python datasets/catalog/tools/fit_method_overhead.py            # print the fit and write the CSV
    python datasets/catalog/tools/fit_method_overhead.py --dry-run  # print only

Run it after fit_engine_overhead.py and fit_power_model.py (README, "Training the cost model"): its fits are
against the analytic step and prefill times of engines.yaml's efficiency and overhead, and its prefill energy
ratio against the prefill energy of engines.yaml's power floor and slope.

The roofline says a method that reads fewer weight bytes decodes faster. Our H100 records say the
opposite for HF transformers without vLLM-class kernels: LLM.int8 decodes 3.5-5.6x slower than bf16,
torchao's fp8 7x, and their time per step grows with the number of layers, not with the bytes. The extra
time is kernels the method adds to every layer (quantize the activations, dequantize or split the
outliers, rescale), small tensors at decode, so it is bound by kernel launches and about the same per
layer at any model size (measured spread below). The analytic model adds it to the step time:

    t_step = max(t_mem, t_comp) / efficiency + engine overhead
             + num_layers x (per_layer_overhead_ms + per_layer_per_seq_ms x (batch - 1))

Fit (recommender/costmodel/method_overhead.py), per (method, engine) with at least MIN_PAIRS pairs: every
cell of the method is paired with the bf16 cell of the same model, engine, batch size and workload on the
same card (fp16 where bf16 was not measured: the same bytes); a cell with several records counts with its median step time. The overhead is
the median over the pairs of the difference the analytic model leaves unexplained, per layer, in ms:
((t_step(method) - t_step(16-bit)) - (the same difference in the analytic model without method overheads))
/ num_layers, so the fewer weight bytes and the dequantized copy the roofline already charges are not
counted twice (recommender/costmodel/method_overhead.py); p10/p90 give the spread. A negative median is not
physical and is written as 0. The 16-bit and fp32 methods have none by definition (fp32's extra time at
large batch is compute, which the roofline models). Where the pairs' overhead grows with the batch (the
medians per batch size with at least MIN_PAIRS pairs rise along a weighted line: compiled torchao int4
weight-only, 0.16 / 0.20 / 0.54 ms per layer at batch 1 / 8 / 32 in s17, 0.15 / 0.20 / 0.53 in s27),
per_layer_overhead_ms is that line at batch 1 and per_layer_per_seq_ms its slope per further sequence
(`method_overhead._batch_line`; served since s27); elsewhere the slope is 0 and the first the median over all
pairs, the only fit before s27.

Prefill (the columns prefill_time_ratio, prefill_p10, prefill_p90, prefill_n_pairs): the roofline times a
method's prefill at its compute dtype and bytes, so torchao-fp8 gets the fp8 tensor rate (2x bf16) and the
weight-only methods their fewer bytes; our records time every quantized prefill slower than bf16's. Per
(method, engine) with at least MIN_PAIRS same-cell pairs of TTFT against the 16-bit cell, the ratio is the
median over the pairs of (ttft(method) / ttft(16-bit)) / (modelled(method) / modelled(16-bit)), with
`modelled` the analytic prefill time without the ratio (`method_overhead.modelled_prefill_ms`), never below
method_overhead.PREFILL_RATIO_FLOOR (1: see there); the analytic model multiplies the method's prefill time
by it. A (method, engine) with decode pairs and too few prefill pairs gets empty prefill columns (ratio 1).
Since s28 also `prefill_ratio_by_tokens`: "tokens:ratio;..." knots, the same median per token count of the batch
(batch x prompt tokens) with at least MIN_PAIRS pairs, floored alike, empty with fewer than two such counts; the
analytic model interpolates them in log-log (flat beyond the ends) in place of the one median
(`method_overhead._tokens_knots`, `ratio_at_tokens`).

Prefill energy (prefill_energy_ratio, prefill_energy_p10, prefill_energy_p90, prefill_energy_n_pairs): with the
time ratios in place, the analytic prefill energy (the power model at the longer time) is compared in the same
way with the measured prefill_energy_j of the same pairs; the median of (measured ratio to 16-bit) / (modelled
ratio to 16-bit), no floor, multiplies the method's analytic prefill energy; its knots, the same per token count
(`prefill_energy_ratio_by_tokens`), replace it where there are two or more.

Decode busy share (decode_busy_fraction, decode_busy_p10, decode_busy_p90, decode_busy_n_pairs; since s29): the
analytic decode power counts the method's per-layer overhead as time off the roofline, at low power, while the
torchao weight-only methods' overhead is arithmetic (measured decode power x1.3-2.1 the modelled,
docs/experiments/decode-power-by-method-s28.md). The power's utilisation counts `busy` x the overhead time as
roofline time. Per same-cell pair with the 16-bit cell: the method cell's measured decode power (decode J per
output token x tokens/s) divided by the 16-bit cell's measured / modelled power (the machine's offset), less the
modelled power with no share, over the watts one unit of share adds (`method_overhead.modelled_decode_power_parts`;
pairs where it adds under 1 W are left out); the median per (method, engine), clipped to [0,
method_overhead.BUSY_MAX]. It changes the analytic decode power and J/token only, not the trees' features
(analytic.Estimate.energy_per_token_j_unscaled).

Rows: our ok records (datasets/measurements/<card>/*.jsonl, not rejected/ or raw/), any batch size,
`measurement_scope: simulated` never. Public rows have no quantized HF cells and are not used.

The CSV serves predictions. The trainer's cross-validation refits the overheads inside every fold from
our rows outside the fold's held-out group (`train-cost-model`), so a held-out card or architecture never
informs them.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
for _p in (REPO, Path(__file__).resolve().parent):  # the repo, and this folder for the sibling tool
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import fit_engine_overhead as FE  # noqa: E402  (reads our records the same way)

from recommender.costmodel import method_overhead as MO  # noqa: E402

CATALOG = REPO / "datasets" / "catalog"
OUT = CATALOG / "method_overhead.csv"
SCRIPT = "datasets/catalog/tools/fit_method_overhead.py"
measurement_files = FE.measurement_files
COLUMNS = ("quant_id", "engine_id", "per_layer_overhead_ms", "p10_ms", "p90_ms", "n_pairs", "n_models",
           "gpus", "source", *MO.PREFILL_COLUMNS, *MO.PREFILL_ENERGY_COLUMNS, "per_layer_per_seq_ms",
           MO.PREFILL_KNOTS_COLUMN, MO.PREFILL_ENERGY_KNOTS_COLUMN, *MO.DECODE_BUSY_COLUMNS)


#: the record fields the fits read: decode throughput, TTFT (ms), prefill energy (J), decode power (W,
#: `method_overhead.decode_power_w` of the record's decode J per output token and tokens/s)
FIELDS = ("tokens_per_s", "ttft_ms", "prefill_energy_j", "decode_power_w")


def _records(files: list[Path], catalog) -> dict[str, tuple[list, list, list]]:
    """Per field of FIELDS, (cell keys, values, batch sizes) of the ok records on a known card that have a numeric
    value of it; the files are read once."""
    out = {f: ([], [], []) for f in FIELDS}
    for r, _ in FE.ok_records(files):
        gpu = catalog.record_gpu(r)
        if gpu is None:
            continue
        key = (gpu.id, r.get("model"), r.get("quant"), r.get("engine"), r.get("batch_size"), r.get("prompt_tokens"),
               r.get("output_tokens"))
        for f, (keys, values, batch) in out.items():
            v = (MO.decode_power_w(r.get("decode_energy_per_token_j"), r.get("tokens_per_s")) if f == "decode_power_w"
                 else r.get(f))
            if isinstance(v, (int, float)):
                keys.append(key)
                values.append(float(v))
                batch.append(r.get("batch_size"))
    return out


def fit(files: list[Path] | None = None, catalog=None) -> list[dict]:
    """One row per (method, engine) with at least MIN_PAIRS decode or prefill pairs (COLUMNS)."""
    from recommender.catalog import load_catalog

    catalog = catalog or load_catalog()
    files = measurement_files() if files is None else files

    def layers(model: str):
        m = catalog.models.find(model)
        return m.num_layers if m is not None else None

    names = ", ".join(f"{p.parent.name}/{p.name}" for p in files)
    recs = _records(files, catalog)
    cells = MO.step_times(*recs["tokens_per_s"])
    modelled = MO.modelled_step_ms(catalog, list(cells))
    decode = [{**row, "source": f"{SCRIPT} on {names}: median over same-cell pairs with the 16-bit cell of "
                                "(t_step(method) - t_step(16-bit) - the same difference in the analytic model "
                                "without method overheads) / num_layers"}
              for row in MO.fit(cells, layers, modelled)]
    prefill_cells = MO.prefill_times(*recs["ttft_ms"][:2])
    prefill = MO.fit_prefill(prefill_cells, MO.modelled_prefill_ms(catalog, list(prefill_cells)))
    # the prefill energy ratio is what the analytic model with those time ratios still leaves unexplained
    with_time = copy.copy(catalog)
    with_time.method_overhead = MO.merge(decode, prefill)
    energy_cells = MO.median_per_cell(*recs["prefill_energy_j"][:2])
    energy = MO.fit_prefill_energy(energy_cells, MO.modelled_prefill_energy_j(with_time, list(energy_cells)))
    power_cells = MO.median_per_cell(*recs["decode_power_w"][:2])
    power = MO.fit_decode_busy_fraction(power_cells, MO.modelled_decode_power_parts(with_time, list(power_cells)))
    return MO.merge(decode, prefill, energy, power)


def to_csv(rows: list[dict], columns=COLUMNS) -> str:
    """`rows` as CSV text with `columns` (fit_memory_residual.py writes its own columns with it too)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    args = ap.parse_args(argv)
    rows = fit()
    print("decode overhead per layer:")
    for r in rows:
        if r["per_layer_overhead_ms"] != "":
            slope = f" + {r['per_layer_per_seq_ms']:.4f} x (batch - 1)" if r.get("per_layer_per_seq_ms") else ""
            print(f"  {r['quant_id']:17s} {r['engine_id']:12s} {r['per_layer_overhead_ms']:7.3f}{slope} ms/layer "
                  f"[p10 {r['p10_ms']:.3f}, p90 {r['p90_ms']:.3f}] over {r['n_pairs']} pairs, {r['n_models']} models")
    for title, (ratio, p10, p90, n), column in (
            (f"prefill time ratio (x the analytic prefill; floor {MO.PREFILL_RATIO_FLOOR:g}):", MO.PREFILL_COLUMNS,
             MO.PREFILL_KNOTS_COLUMN),
            ("prefill energy ratio (x the analytic prefill energy with the time ratio):", MO.PREFILL_ENERGY_COLUMNS,
             MO.PREFILL_ENERGY_KNOTS_COLUMN)):
        print(title)
        for r in rows:
            if r[ratio] != "":
                knots = f"; by batch x prompt tokens {r[column]}" if r.get(column) else ""
                print(f"  {r['quant_id']:17s} {r['engine_id']:12s} x{r[ratio]:7.3f} [p10 {r[p10]:.3f}, p90 "
                      f"{r[p90]:.3f}] over {r[n]} pairs{knots}")
            else:
                print(f"  {r['quant_id']:17s} {r['engine_id']:12s} none (fewer than {MO.MIN_PAIRS} pairs)")
    busy, b10, b90, bn = MO.DECODE_BUSY_COLUMNS
    print(f"decode busy share of the method overhead (0 = idle gaps; at most {MO.BUSY_MAX:g}):")
    for r in rows:
        if r.get(busy, "") != "":
            print(f"  {r['quant_id']:17s} {r['engine_id']:12s} {r[busy]:6.3f} [p10 {r[b10]:.3f}, p90 {r[b90]:.3f}] "
                  f"over {r[bn]} pairs")
    if not args.dry_run:
        OUT.write_text(to_csv(rows), encoding="utf-8")
        print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
