"""Refit the engines' analytic constants without some rows: the trainer's cross-validation does it per fold.

The constants (engines.yaml `analytic`): `roofline_efficiency` (dimensionless) and `per_token_overhead_ms`
(ms per step), fitted by `engine_overhead.py` on batch-1 16-bit rows of ours and of the public data,
`power_floor` / `power_slope` (dimensionless), fitted by `power_model.py` on our 16-bit/fp32 records, and the
prefill's own efficiency and overhead (`prefill_model.py`). The
tools (datasets/catalog/tools/fit_engine_overhead.py, fit_power_model.py, fit_prefill_model.py) fit them once on
every row; here
`ToolRows` reads the same rows once and `ToolRows.refit` fits them again on the rows a `HeldOut` leaves:

  * a tool row is left out when its card's silicon (bandwidth, memory, fp16 tensor rate, as the trainer
    groups GPU ids), its model's architecture (identical shape) or its cell without the card (`twin_key`)
    is held out (`HeldOut.of`: occurs among the held-out training rows and not among the others); a row
    whose keys match no training row is kept;
  * order as the tools: efficiency and overhead first, then floor and slope on a catalogue holding those
    (the utilisation u the power fit uses depends on them); read_ours' stable-only rule is decided on the
    rows kept;
  * values rounded as the tools write engines.yaml (`DIGITS`), so with nothing held out the refit is
    engines.yaml (when the file is fresh);
  * an engine left with too few rows (efficiency and overhead: < engine_overhead.MIN_FIT_ROWS; power: <
    power_model.MIN_ROWS; prefill: < prefill_model.MIN_ROWS) keeps the catalogue's values (its all-row fit), or
    for power and prefill with `power_fallback="defaults"` the analytic.PARAMS defaults (prefill: the decode
    step's efficiency and overhead);
  * the prefill's own constants (`prefill_efficiency`, `prefill_overhead_ms`, prefill_model.py,
    datasets/catalog/tools/fit_prefill_model.py) are fitted on their own rows (16-bit records with a measured
    TTFT), which the decode constants do not enter.

Fits are cached by the rows they use, so folds that leave an engine's rows alike share its fit.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender.costmodel import engine_overhead as EO
from recommender.costmodel import power_model as PM
from recommender.costmodel import prefill_model as PF

#: the constants refitted, and the decimals the tools write them with in engines.yaml
DIGITS = {"roofline_efficiency": 3, "per_token_overhead_ms": 2, "power_floor": 3, "power_slope": 3,
          "prefill_efficiency": 3, "prefill_overhead_ms": 2}
#: the prefill's own constants (prefill_model.py) and the `PF.PrefillFit` fields that hold them
PREFILL = (("prefill_efficiency", "efficiency"), ("prefill_overhead_ms", "overhead_ms"))


def silicon(catalog) -> dict[str, tuple]:
    """GPU id -> (bandwidth GB/s, memory GB, fp16 tensor TFLOP/s): ids of one silicon are one group."""
    return {r.id: (r.bandwidth_gbs, r.memory_gb, r.fp16_tensor_tflops) for r in catalog.gpus}


def shape(catalog) -> dict[str, tuple]:
    """Model id -> its architecture's shape: models of one shape (fine-tunes) are one group."""
    return {r.id: (r.num_layers, r.hidden_size, r.intermediate_size, r.num_attention_heads, r.kv_heads,
                   r.head_size, r.vocab_size, r.mlp_gated) for r in catalog.models}


def _num(v) -> float | None:
    v = EO._float(v)
    return None if np.isnan(v) else v


def twin_key(model, engine, quant, batch, prompt, output, scope, kv_bits) -> tuple:
    """A cell without its card (catalogue ids; tokens; KV-cache bits, None where not given)."""
    return (str(model), str(engine), str(quant), _num(batch), _num(prompt), _num(output), scope or None,
            _num(kv_bits))


@dataclass
class RowKeys:
    """Per row: its card's silicon, its model's shape and its twin key (None where it cannot be resolved)."""

    silicon: list
    arch: list
    twin: list

    @classmethod
    def of(cls, catalog, gpu, model, quant, engine, batch, prompt, output, scope, kv_bits) -> RowKeys:
        sil, shp = silicon(catalog), shape(catalog)

        def find(table, name):
            r = table.find(str(name))
            return r.id if r is not None else str(name)

        models = [find(catalog.models, m) for m in model]
        quants = [find(catalog.quants, q) for q in quant]
        engines = [find(catalog.engines, e) for e in engine]
        return cls([sil.get(find(catalog.gpus, g)) for g in gpu], [shp.get(m) for m in models],
                   [twin_key(*k) for k in zip(models, engines, quants, batch, prompt, output, scope, kv_bits,
                                               strict=True)])

    def __len__(self) -> int:
        return len(self.twin)


@dataclass(frozen=True)
class HeldOut:
    """Keys held out: those of held-out rows that no other row has."""

    silicon: frozenset = frozenset()
    arch: frozenset = frozenset()
    twin: frozenset = frozenset()

    @classmethod
    def of(cls, keys: RowKeys, held: np.ndarray) -> HeldOut:
        """The keys of the rows where `held` that no row outside it has."""
        held = np.asarray(held, dtype=bool)

        def out(col: list) -> frozenset:
            a = {col[i] for i in np.flatnonzero(held)}
            return frozenset(a - {col[i] for i in np.flatnonzero(~held)} - {None})

        return cls(out(keys.silicon), out(keys.arch), out(keys.twin))

    def drops(self, keys: RowKeys) -> np.ndarray:
        """Which rows (of other row sets, e.g. the tools') one of these keys leaves out."""
        return np.array([s in self.silicon or a in self.arch or t in self.twin
                         for s, a, t in zip(keys.silicon, keys.arch, keys.twin, strict=True)], dtype=bool)

    def __bool__(self) -> bool:
        return bool(self.silicon or self.arch or self.twin)


@dataclass
class EngineFit:
    """One engine's constants in a refit (`DIGITS` keys; None: not set, analytic.PARAMS' defaults), the keys
    kept at the catalogue's value for too few rows, and the rows each fit used."""

    values: dict
    kept: tuple = ()
    n_overhead: int = 0
    n_power: int = 0
    n_prefill: int = 0


class ToolRows:
    """The rows of fit_engine_overhead.py, fit_power_model.py and fit_prefill_model.py (read once, from
    `data_dir`: default the shipped datasets/) with their keys, refitted without the rows a `HeldOut` leaves out."""

    def __init__(self, catalog, data_dir: Path | None = None):
        from recommender.paths import data_root

        data_dir = Path(data_dir) if data_dir is not None else data_root()
        files = EO.measurement_files(data_dir / "measurements")
        public, _ = EO.read_public(catalog, data_dir / "public")
        ours = EO.own_rows(catalog, files)
        #: per engine: public rows, then our candidates (stable or not)
        self.overhead: dict[str, EO.Rows] = EO.engine_rows(public, ours)
        self.own = {e: np.array([s is not None for s in r.stable], dtype=bool) for e, r in self.overhead.items()}
        self.overhead_keys = {e: RowKeys.of(catalog, r.gpu, r.model, r.quant, [e] * len(r), r.batch, r.prompt,
                                            r.output, r.scope, r.kv_bits) for e, r in self.overhead.items()}
        self.power = PM.power_rows(catalog, files)
        self.power_keys = {e: RowKeys.of(catalog, r["gpu"], r["model"], r["quant"], [e] * len(r["power"]),
                                         r["batch"], r["prompt"], r["output"], [EO.OWN_SCOPE] * len(r["power"]),
                                         [None] * len(r["power"])) for e, r in self.power.items()}
        self._xz = {e: EO.design(catalog, r) for e, r in self.overhead.items()}
        #: per engine, the rows `fit_engine` keeps (EO.fittable)
        self._fittable = {e: EO.fittable(self._xz[e][0], r.seconds) for e, r in self.overhead.items()}
        self._catalog = catalog  # the design matrices and fit caches above are of this catalogue
        self.prefill = PF.prefill_rows(catalog, files)
        self.prefill_keys = {e: RowKeys.of(catalog, r["gpu"], r["model"], r["quant"], [e] * len(r["ttft_s"]),
                                           r["batch"], r["prompt"], r["output"], [EO.OWN_SCOPE] * len(r["ttft_s"]),
                                           [None] * len(r["ttft_s"])) for e, r in self.prefill.items()}
        self._util: dict[tuple, tuple] = {}
        self._fits: dict[tuple, tuple[float, float]] = {}
        self._power_fits: dict[tuple, tuple[float, float]] = {}
        self._prefill_roof: dict[str, tuple] = {}
        self._prefill_fits: dict[tuple, tuple[float, ...]] = {}

    def overhead_selection(self, engine: str, out: HeldOut) -> np.ndarray:
        """Positions of the engine's overhead-fit rows a refit without `out` uses (read_ours' stable-only
        rule decided on our rows kept)."""
        rows = self.overhead[engine]
        keep = ~out.drops(self.overhead_keys[engine]) if out else np.ones(len(rows), dtype=bool)
        own = self.own[engine]
        public = np.flatnonzero(keep & ~own)
        mine = np.flatnonzero(keep & own)
        if len(mine):
            sel, _ = EO.stable_rule(rows.take(mine))
            mine = mine[sel]
        return np.concatenate([public, mine]).astype(int)

    def power_selection(self, engine: str, out: HeldOut) -> np.ndarray:
        n = len(self.power[engine]["power"])
        return np.flatnonzero(~out.drops(self.power_keys[engine]) if out else np.ones(n, dtype=bool))

    def prefill_selection(self, engine: str, out: HeldOut) -> np.ndarray:
        n = len(self.prefill[engine]["ttft_s"])
        return np.flatnonzero(~out.drops(self.prefill_keys[engine]) if out else np.ones(n, dtype=bool))

    def refit(self, catalog, out: HeldOut, power_fallback: str = "catalogue") -> dict[str, EngineFit]:
        """Each engine's constants (the tools' engines that `catalog` has) fitted without `out`'s rows;
        `catalog` must be the one the rows were read with (the cached design matrices and fits are its)."""
        if catalog is not self._catalog:
            raise ValueError("ToolRows.refit: a catalogue other than the one its rows were read with; build a "
                             "new ToolRows(catalog) for it")
        base = {e.id: dict(e.analytic or {}) for e in catalog.engines}
        fits: dict[str, EngineFit] = {}
        for eng in EO.ENGINES:
            if eng not in base:
                continue
            f = fits[eng] = EngineFit({k: _num(base[eng].get(k)) for k in DIGITS})
            if eng not in self.overhead:
                continue
            sel = self.overhead_selection(eng, out)
            f.n_overhead = len(sel)
            if int(self._fittable[eng][sel].sum()) < EO.MIN_FIT_ROWS:  # counted after fit_engine's own drop
                f.kept += ("roofline_efficiency", "per_token_overhead_ms")
                continue
            key = (eng, sel.tobytes())
            if key not in self._fits:
                X, Z = self._xz[eng]
                r = EO.fit_engine(catalog, eng, self.overhead[eng].take(sel), None, None, xz=(X[sel], Z[sel]))
                self._fits[key] = (_written(r.efficiency, 3), _written(r.overhead_ms, 2))
            f.values["roofline_efficiency"], f.values["per_token_overhead_ms"] = self._fits[key]
        cat = with_constants(catalog, fits)
        for eng, f in fits.items():
            if eng not in self.power:
                continue
            rows = self.power[eng]
            sel = self.power_selection(eng, out)
            f.n_power = len(sel)
            if len(sel) < PM.MIN_ROWS:
                if len(rows["power"]) >= PM.MIN_ROWS:  # the tool fitted it on every row
                    f.kept += ("power_floor", "power_slope")
                    if power_fallback == "defaults":
                        f.values["power_floor"] = f.values["power_slope"] = None
                continue
            ukey = (eng, f.values["roofline_efficiency"], f.values["per_token_overhead_ms"])
            if ukey not in self._util:
                self._util[ukey] = PM.utilisation(cat, eng, rows)
            key = (*ukey, sel.tobytes())
            if key not in self._power_fits:
                u, idle, tdp = self._util[ukey]
                p = PM.fit_engine(cat, eng, {k: [v[i] for i in sel] for k, v in rows.items()},
                                  util=(u[sel], idle[sel], tdp[sel]))
                self._power_fits[key] = (_written(p.floor, 3), _written(p.slope, 3))
            f.values["power_floor"], f.values["power_slope"] = self._power_fits[key]
        for eng, f in fits.items():  # the prefill's own constants: their rows and roofline alone
            if eng not in self.prefill:
                continue
            rows = self.prefill[eng]
            sel = self.prefill_selection(eng, out)
            f.n_prefill = len(sel)
            names = tuple(k for k, _ in PREFILL)
            if len(sel) < PF.MIN_ROWS:
                if len(rows["ttft_s"]) >= PF.MIN_ROWS:  # the tool fitted them on every row
                    f.kept += names
                    if power_fallback == "defaults":
                        for k in names:
                            f.values[k] = None
                continue
            if eng not in self._prefill_roof:  # the roofline does not depend on the refitted constants
                self._prefill_roof[eng] = PF.roofline(catalog, eng, rows)
            key = (eng, sel.tobytes())
            if key not in self._prefill_fits:
                roof, default = self._prefill_roof[eng]
                p = PF.fit_engine(catalog, eng, {k: [v[i] for i in sel] for k, v in rows.items()},
                                  precomputed=(roof[sel], default[sel]))
                self._prefill_fits[key] = tuple(_written(getattr(p, attr), DIGITS[k]) for k, attr in PREFILL)
            for (k, _), v in zip(PREFILL, self._prefill_fits[key], strict=True):
                f.values[k] = v
        return fits


def _written(v: float, digits: int) -> float:
    """The value as a tool writes it into engines.yaml and the catalogue reads it back."""
    return float(f"{v:.{digits}f}")


def constants_key(fits: dict[str, EngineFit]) -> tuple:
    """A hashable key of a refit's values (folds with equal keys share one feature build)."""
    return tuple((e, tuple(f.values[k] for k in DIGITS)) for e, f in sorted(fits.items()))


def with_constants(catalog, fits: dict[str, EngineFit]):
    """A shallow catalogue copy whose engines carry the refitted constants (a None value: the key removed);
    other engines and every other catalogue table untouched."""
    rows = []
    for e in catalog.engines:
        f = fits.get(e.id) or (fits.get(e.variant_of) if e.variant_of else None)  # a variant: its engine's
        if f is None:
            rows.append(e)
            continue
        a = dict(e.analytic or {})
        for k, v in f.values.items():
            if v is None:
                a.pop(k, None)
            else:
                a[k] = v
        rows.append(dataclasses.replace(e, analytic=a))
    cat = copy.copy(catalog)
    cat.engines = type(catalog.engines)(catalog.engines.kind, rows)
    return cat
