"""Output of a `Result`: rich table (default), one JSON object, flat CSV, explanation, Pareto plot.

rich and matplotlib are imported inside the functions that need them (cold-start budget).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from typing import Any

from recommender.rank import PRIORITY_METRIC, Result, candidate_dicts, explain, pareto_front, shown_rows

QUANTILE_KEYS = ("p10", "p50", "p90")
#: Units of every JSON candidate field (repeated in the JSON query as `units`).
UNITS = {
    "memory_gb": "peak GPU memory, GB (2**30 bytes)",
    "energy_per_token_j": "GPU energy per output token in decode, J",
    "tokens_per_s": "aggregate decode throughput of the whole batch, tokens/s",
    "ttft_ms": "prefill of the batch (time to first token), ms",
    "prefill_energy_j": "GPU energy of the prefill of one batch, J",
    "latency_s": "time of one request (prefill + its output tokens), s",
    "workload_time_s": "time of the stated workload (ceil(requests/batch) batches), s",
    "energy_wh": "energy of the stated workload x PUE, Wh",
    "wh_per_1k_requests": "energy of 1,000 requests of the workload x PUE, Wh",
    "usd_per_1m_tokens": "electricity cost per 1M output tokens, USD",
    "gco2e_per_1m_tokens": "emissions per 1M output tokens, gCO2e",
    "accuracy": "mean task score, percent (0-100)",
    "eor": "accuracy / energy_wh (paper EOR)",
    "tweor": "accuracy / (energy_wh x workload_time_s) (paper TWEOR)",
}


def rows(res: Result, top: int | None, include_excluded: bool) -> list[dict[str, Any]]:
    """Candidate dicts of the shown rows (ranked first, then excluded if asked)."""
    shown = shown_rows(res, top, include_excluded)  # ranked rows come first
    return candidate_dicts(res, shown, [k + 1 if res.code[i] == 0 else None for k, i in enumerate(shown)])


def to_json(res: Result, cands: list[dict], explanation: list[str] | None = None) -> str:
    """ONE JSON object: {"query": {...}, "candidates": [...]} (+ "explanation" with --explain)."""
    obj: dict[str, Any] = {"query": {**res.query, "units": UNITS}, "candidates": cands}
    if explanation is not None:
        obj["explanation"] = explanation
    indent = 2 if len(cands) <= 200 else None  # the pure-Python indenting encoder is slow on big outputs
    return json.dumps(obj, indent=indent, allow_nan=False, default=_json_default)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def flatten(d: dict[str, Any]) -> dict[str, Any]:
    """Quantile objects -> `<name>_p10/_p50/_p90` columns; lists -> ';'-joined (inside dicts too; a dict in a
    list as `key=value` pairs joined by ','); other dicts -> `<name>_<key>`."""
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if k in UNITS or (isinstance(v, dict) and set(v) == set(QUANTILE_KEYS)):
            for q in QUANTILE_KEYS:
                flat[f"{k}_{q}"] = None if v is None else v.get(q)
        elif isinstance(v, dict):
            for sk, sv in v.items():
                flat[f"{k}_{sk}"] = _joined(sv) if isinstance(sv, list) else sv
        elif isinstance(v, list):
            flat[k] = _joined(v)
        else:
            flat[k] = v
    return flat


def _joined(items: list) -> str:
    return ";".join(",".join(f"{k}={v}" for k, v in x.items()) if isinstance(x, dict) else str(x) for x in items)


def to_csv(cands: list[dict]) -> str:
    """Flat CSV with a header (empty cells for null)."""
    buf = io.StringIO()
    flat = [flatten(c) for c in cands]
    header = list(flat[0]) if flat else list(flatten(_empty_row()))
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for r in flat:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _empty_row() -> dict:
    keys = ("rank", "gpu", "model", "quant", "engine", "batch_size", "fits", *UNITS, "source", "excluded_reason")
    return {k: None for k in keys}


def _f(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:,.0f}"


def print_table(res: Result, cands: list[dict], file=None) -> None:
    """Rich table of the shown rows with a one-line caption of the query."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    file = file or sys.stdout
    width = None if file.isatty() else 240
    console = Console(file=file, width=width, highlight=False, soft_wrap=False)
    q = res.query
    metric = PRIORITY_METRIC[res.priority][0]
    title = (f"{q['candidates_ranked']} of {q['candidates_total']} candidates ranked by {metric} "
             f"({res.priority}); workload {q['requests']} x {q['prompt_tokens']}+{q['output_tokens']} tokens, "
             f"PUE {q['pue']:g}; cost model {q['cost_model']}")
    table = Table(title=title, title_justify="left", header_style="bold")
    cols = [("rank", "right"), ("gpu", "left"), ("model", "left"), ("quant", "left"), ("engine", "left"),
            ("batch", "right"), ("fits", "center"), ("mem GB", "right"), ("J/token p50 [p10-p90]", "right"),
            ("tok/s", "right"), ("latency s", "right"), ("Wh", "right"), ("accuracy", "right"),
            ("EOR", "right"), ("TWEOR", "right"), ("source", "left")]
    for name, just in cols:
        table.add_column(escape(name), justify=just, no_wrap=name not in ("model",))
    if any(c["excluded_reason"] for c in cands):
        table.add_column("excluded because", overflow="fold")
    for c in cands:
        e = c["energy_per_token_j"]
        cells = [
            "-" if c["rank"] is None else str(c["rank"]), c["gpu"], c["model"], c["quant"], c["engine"],
            str(c["batch_size"]), "yes" if c["fits"] else "no", _f(c["memory_gb"]["p50"]),
            f"{_f(e['p50'])} [{_f(e['p10'])}-{_f(e['p90'])}]" if e["p50"] is not None else "-",
            _f(c["tokens_per_s"]["p50"]), _f(c["latency_s"]["p50"]), _f(c["energy_wh"]["p50"]),
            _f(c["accuracy"]["p50"]), _f(c["eor"]["p50"]), _f(c["tweor"]["p50"]), c["source"],
        ]
        if len(table.columns) > len(cols):
            cells.append(c["excluded_reason"] or "")
        table.add_row(*(Text(x) for x in cells), style="dim" if c["rank"] is None else None)
    console.print(table)


def explanation(res: Result) -> list[str]:
    return explain(res)


def plot(res: Result, path: str) -> None:
    """Accuracy vs workload energy of the ranked candidates; the Pareto front highlighted; saved to `path`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from recommender.errors import UserError

        raise UserError("--plot needs matplotlib: pip install 'energy-recommender[plot]'") from exc
    import numpy as np

    rows = res.order
    e, a = res.metrics["energy_wh"].p50[rows], res.metrics["accuracy"].p50[rows]
    front = pareto_front(e, a)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    ax.scatter(e[~front], a[~front], s=12, alpha=0.45, color="tab:gray", label="candidates")
    order = np.argsort(e[front])
    ax.plot(e[front][order], a[front][order], "-o", color="tab:red", ms=5, label="Pareto front")
    if len(rows):
        ax.scatter([e[0]], [a[0]], marker="*", s=220, color="tab:blue", zorder=5, label="top choice")
        c = res.cands
        for j in np.flatnonzero(front)[:12]:
            i = rows[j]
            ax.annotate(f"{c.ids('gpu')[i]} {c.ids('model')[i]} {c.ids('quant')[i]} {c.ids('engine')[i]} "
                        f"b{int(c.batch_size[i])}", (e[j], a[j]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    q = res.query
    ax.set_xscale("log")
    ax.set_xlabel(f"energy of {q['requests']} requests ({q['prompt_tokens']}+{q['output_tokens']} tokens), Wh")
    ax.set_ylabel("accuracy (mean task score, %)")
    ax.set_title(f"accuracy vs energy ({res.priority} priority, cost model {q['cost_model']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
