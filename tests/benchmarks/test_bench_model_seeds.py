"""benchmarks/bench_model_seeds.py: the paired comparison of two arms' per-seed validation errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.fixtures.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
seeds_mod = load_script(REPO / "benchmarks" / "bench_model_seeds.py")


def _arm(values: dict[str, list[float]], seeds=("1", "2", "3")) -> dict:
    per_seed = {s: {k: v[i] for k, v in values.items()} for i, s in enumerate(seeds)}
    summary = {k: dict(zip(("mean", "sd"), seeds_mod._mean_sd(v), strict=True)) for k, v in values.items()}
    return {"seeds": list(seeds), "per_seed": per_seed, "summary": summary}


def test_compare_pairs_the_seeds_and_gives_the_standard_error_of_the_mean_difference():
    a = _arm({"energy_per_token_j logo": [18.0, 17.0, 19.0], "ttft_ms lomo": [9.0, 9.5, 10.0]})
    b = _arm({"energy_per_token_j logo": [19.0, 18.0, 20.0], "ttft_ms lomo": [9.0, 10.5, 9.0]})
    rows = {k: (m, se, n) for k, m, se, n in seeds_mod.compare(a, b)}
    # the same +1 at every seed: a difference with no spread, though each arm spreads by 1 point
    assert rows["energy_per_token_j logo"] == (pytest.approx(1.0), pytest.approx(0.0), 3)
    m, se, n = rows["ttft_ms lomo"]  # differences 0, +1, -1
    assert m == pytest.approx(0.0) and se == pytest.approx(1.0 / math.sqrt(3)) and n == 3


def test_compare_keeps_only_the_seeds_and_keys_both_arms_ran(tmp_path, capsys, monkeypatch):
    a = _arm({"x logo": [1.0, 2.0, 3.0], "only_a": [0.0, 0.0, 0.0]})
    b = _arm({"x logo": [2.0, 3.0]}, seeds=("1", "2"))
    rows = seeds_mod.compare(a, b)
    assert [(k, n) for k, _, _, n in rows] == [("x logo", 2)]
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a)), pb.write_text(json.dumps(b))
    monkeypatch.setattr("sys.argv", ["bench_model_seeds.py", "--compare", str(pa), str(pb)])
    assert seeds_mod.main() == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("x logo") and "+1.00 pp" in line and line.endswith("*")  # +1 at both seeds, se 0
