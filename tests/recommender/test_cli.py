"""`recommend` end to end: output formats, fields, EOR/TWEOR consistency, error paths, the installed script.

In-process tests run on the small fixture catalogue with a fake cost model (fast, deterministic) and
again on the shipped catalogue with the shipped cost model; the slow test builds a wheel, installs it
into a fresh venv and runs the console script from a temporary directory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

import recommender.rank as rank_mod
from recommender.cli import main
from tests.recommender.test_rank import FakeCostModel, fixture_catalog

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("rank", "gpu", "model", "quant", "engine", "batch_size", "fits", "memory_gb", "energy_per_token_j",
            "tokens_per_s", "latency_s", "energy_wh", "accuracy", "eor", "tweor", "source", "excluded_reason",
            "wh_per_1k_requests", "usd_per_1m_tokens", "gco2e_per_1m_tokens", "accuracy_tasks", "gpu_specs_derived")
QUANTILE_FIELDS = ("memory_gb", "energy_per_token_j", "tokens_per_s", "latency_s", "energy_wh", "accuracy",
                   "eor", "tweor", "wh_per_1k_requests", "workload_time_s")


def invoke(capsys, *args):
    """Run `recommend ARGS` in-process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def fake(monkeypatch):
    cat = fixture_catalog()
    monkeypatch.setattr(rank_mod, "load_catalog", lambda: cat)
    monkeypatch.setattr(rank_mod, "_load_cost_model", lambda model_dir: FakeCostModel())
    return cat


def shipped_ready() -> bool:
    from recommender.catalog import load_catalog

    cat = load_catalog()
    return all(len(t) for t in (cat.gpus, cat.models, cat.quants, cat.engines))


needs_shipped = pytest.mark.skipif(not shipped_ready(), reason="shipped catalogue incomplete")


# ---- formats and fields ------------------------------------------------------------------------
def check_json(out: str, priority: str = "energy") -> dict:
    obj = json.loads(out)  # ONE object
    assert set(obj) >= {"query", "candidates"}
    q = obj["query"]
    for k in ("gpus", "models", "quants", "engines", "batch_sizes", "prompt_tokens", "output_tokens", "requests",
              "priority", "pue", "cost_model", "grid_gco2_per_kwh", "grid_source", "excluded"):
        assert k in q, k
    assert q["priority"] == priority
    ranked = [c for c in obj["candidates"] if c["rank"] is not None]
    assert ranked and [c["rank"] for c in ranked] == list(range(1, len(ranked) + 1))
    for c in obj["candidates"]:
        for k in REQUIRED:
            assert k in c, k
        for k in QUANTILE_FIELDS:
            assert set(c[k]) == {"p10", "p50", "p90"}, k
        assert c["source"] in ("measured", "predicted")
    for c in ranked:
        s, wh, t = c["accuracy"]["p50"], c["energy_wh"]["p50"], c["workload_time_s"]["p50"]
        assert c["excluded_reason"] is None and c["fits"] is True
        if s is not None:
            assert math.isclose(c["eor"]["p50"], s / wh, rel_tol=1e-9)
            assert math.isclose(c["tweor"]["p50"], s / (wh * t), rel_tol=1e-9)
        for k in ("energy_per_token_j", "energy_wh", "latency_s"):
            v = c[k]
            assert v["p10"] <= v["p50"] <= v["p90"], k
    return obj


def test_json(fake, capsys):
    code, out, err = invoke(capsys, "--gpu", "rtx4060ti", "--priority", "energy", "--format", "json")
    assert code == 0, err
    obj = check_json(out)
    eors = [c["eor"]["p50"] for c in obj["candidates"]]
    assert eors == sorted(eors, reverse=True) and len(eors) == 10
    assert obj["query"]["gpus"] == ["rtx4060ti-16gb"] and obj["query"]["cost_model"] == "fake-v0"
    assert obj["candidates"][0]["usd_per_1m_tokens"] is None  # no price given
    assert obj["candidates"][0]["gco2e_per_1m_tokens"]["p50"] > 0  # world average by default


def test_table_default(fake, capsys):
    code, out, _ = invoke(capsys, "--gpu", "rtx4060ti", "--priority", "energy")
    assert code == 0
    for head in ("rank", "gpu", "quant", "engine", "batch", "fits", "J/token p50 [p10-p90]", "EOR", "TWEOR",
                 "source"):
        assert head in out, head
    assert "rtx4060ti-16gb" in out and "predicted" in out


def test_csv_flat(fake, capsys):
    code, out, _ = invoke(capsys, "--gpu", "a100", "--format", "csv", "--top", "3", "--price-kwh", "0.15")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3
    for k in ("energy_per_token_j_p10", "energy_per_token_j_p50", "energy_per_token_j_p90", "eor_p50",
              "usd_per_1m_tokens_p50", "accuracy_tasks", "excluded_reason", "source"):
        assert k in rows[0], k
    assert float(rows[0]["usd_per_1m_tokens_p50"]) > 0


def test_all_shows_excluded_with_reasons(fake, capsys):
    code, out, _ = invoke(capsys, "--gpu", "v100", "--gpu", "rtx4060ti", "--all", "--format", "json")
    assert code == 0
    obj = json.loads(out)
    excluded = [c for c in obj["candidates"] if c["rank"] is None]
    assert excluded and all(c["excluded_reason"] for c in excluded)
    reasons = " | ".join(c["excluded_reason"] for c in excluded)
    assert "needs compute capability >= 8.9" in reasons  # fp8 on V100
    assert "computes in bf16" in reasons  # bf16-compute method on V100
    assert "does not support quantization" in reasons
    mem = [c for c in excluded if c["excluded_reason"].startswith("needs ")]
    assert mem and all(c["fits"] is False for c in mem)
    code, out, _ = invoke(capsys, "--gpu", "v100", "--format", "json")
    assert all(c["rank"] is not None for c in json.loads(out)["candidates"])  # hidden without --all


def test_explain(fake, capsys):
    code, out, _ = invoke(capsys, "--gpu", "rtx4060ti", "--explain", "--max-latency-ms", "30000")
    assert code == 0
    assert "Top choice" in out and "margin" in out and "Excluded" in out and "predicted by" in out
    code, out, _ = invoke(capsys, "--gpu", "rtx4060ti", "--explain", "--format", "json")
    assert isinstance(json.loads(out)["explanation"], list)


def test_profile_and_region(fake, capsys):
    code, out, _ = invoke(capsys, "--profile", "edge", "--region", "fr", "--format", "json")
    assert code == 0
    q = json.loads(out)["query"]
    assert q["profile"] == "edge" and q["pue"] == 1.1 and q["grid_gco2_per_kwh"] == 56.0
    assert q["gpus"] == ["rtx4060ti-16gb"] and q["memory_headroom_frac"] == 0.1


def test_plot(fake, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "front.png"
    code, _, err = invoke(capsys, "--gpu", "a100", "--plot", str(png), "--format", "json")
    assert code == 0 and png.stat().st_size > 1000 and "wrote" in err


def test_plot_without_matplotlib(fake, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = invoke(capsys, "--gpu", "a100", "--plot", str(tmp_path / "x.png"))
    assert code == 2 and "pip install 'energy-recommender[plot]'" in err


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,start", [
    (("--gpu", "rtx4060x"), "error: unknown GPU 'rtx4060x'; did you mean 'rtx4060ti"),
    (("--model", "qwen9"), "error: unknown model 'qwen9'"),
    (("--quant", "int3"), "error: unknown quantization 'int3'"),
    (("--engine", "vlm"), "error: unknown engine 'vlm'"),
    (("--profile", "edgy"), "error: unknown profile 'edgy'"),
    (("--region", "mars"), "error: unknown region 'mars'"),
])
def test_unknown_names_one_line_exit_2(fake, capsys, args, start):
    code, out, err = invoke(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err


def test_impossible_constraints(fake, capsys):
    code, out, err = invoke(capsys, "--gpu", "a100", "--max-latency-ms", "5")
    assert code == 2 and out == ""
    assert err.startswith("error: no candidate meets --max-latency-ms 5: the fastest fitting candidate needs ")
    assert err.strip().endswith(" ms") and err.count("\n") == 1
    code, _, err = invoke(capsys, "--gpu", "a100", "--min-accuracy", "99")
    assert code == 2 and "no candidate meets --min-accuracy 99: the most accurate fitting candidate scores" in err
    code, _, err = invoke(capsys, "--gpu", "a100", "--max-energy-wh", "0.001")
    assert code == 2 and "no candidate meets --max-energy-wh 0.001" in err
    code, out, err = invoke(capsys, "--gpu", "a100", "--max-latency-ms", "5", "--all", "--format", "json")
    assert code == 0 and "note: no candidate meets" in err and json.loads(out)["candidates"]


@pytest.mark.parametrize("args", [("--prompt-tokens", "0"), ("--output-tokens", "-5"), ("--requests", "0"),
                                  ("--batch-size", "0"), ("--max-latency-ms", "-1"), ("--max-energy-wh", "0"),
                                  ("--price-kwh", "-0.1"), ("--grid-gco2-kwh", "0"), ("--pue", "0.5"),
                                  ("--top", "0"), ("--min-accuracy", "-3"), ("--priority", "cheap"),
                                  ("--format", "xml"), ("--batch-size", "x")])
def test_bad_numbers_rejected_at_parse(fake, capsys, args):
    code, out, err = invoke(capsys, "--gpu", "a100", *args)
    assert code == 2 and out == "" and "Invalid value" in err and "Traceback" not in err


# ---- the shipped catalogue and cost model ---------------------------------------------------------
@needs_shipped
def test_shipped_issue_command(capsys):
    code, out, err = invoke(capsys, "--gpu", "rtx4060ti", "--priority", "energy")
    assert code == 0, err
    assert "rtx4060ti-16gb" in out
    code, out, err = invoke(capsys, "--gpu", "rtx4060ti", "--priority", "energy", "--format", "json")
    assert code == 0, err
    obj = check_json(out)
    assert set(obj["query"]["models"]) == {m for m in obj["query"]["models"]} and len(obj["query"]["models"]) == 6


@needs_shipped
@pytest.mark.parametrize("priority", ["accuracy", "latency", "balanced"])
def test_shipped_priorities(capsys, priority):
    code, out, err = invoke(capsys, "--gpu", "a100", "--gpu", "v100", "--priority", priority, "--format", "json")
    assert code == 0, err
    check_json(out, priority)


@needs_shipped
def test_shipped_all_and_profiles(capsys):
    code, out, err = invoke(capsys, "--gpu", "v100", "--gpu", "rtx4060ti", "--all", "--format", "json")
    assert code == 0, err
    excluded = [c for c in json.loads(out)["candidates"] if c["rank"] is None]
    assert excluded and all(c["excluded_reason"] for c in excluded)
    from recommender.catalog import load_catalog

    for p in load_catalog().profiles.ids():
        code, out, err = invoke(capsys, "--profile", p, "--format", "json", "--top", "3")
        assert code in (0, 2), err
        assert code == 0 or err.startswith("error: no candidate")


def test_hot_path_imports_stay_light():
    """The issue command must not import pandas, lightgbm (the Python package), matplotlib or scipy."""
    code = ("import sys\nfrom recommender.cli import main\ntry:\n    main(['--gpu', 'rtx4060ti', '--priority', "
            "'energy'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('pandas', 'lightgbm', 'matplotlib', 'scipy', 'sklearn', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


# ---- the installed console script ------------------------------------------------------------------
@pytest.mark.slow
@needs_shipped
def test_installed_console_script(tmp_path):
    """Build a wheel, install it (no deps, reusing this environment's packages) into a fresh venv, run
    `recommend --gpu rtx4060ti --priority energy` from a directory outside the checkout."""
    wheels = tmp_path / "wheels"
    import importlib.util

    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation,
                    "-w", str(wheels), "-q"], check=True, cwd=tmp_path, timeout=600)
    wheel = next(wheels.glob("energy_recommender-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # --system-site-packages reaches the base interpreter's packages; when this test runs inside a venv,
    # also expose that venv's site-packages (appended after the new venv's own, so the wheel wins).
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   timeout=600)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "RECOMMENDER_DATA_DIR", "RECOMMENDER_MODEL_DIR", "VIRTUAL_ENV")}
    script = venv / "bin" / "recommend"
    out = subprocess.run([str(script), "--gpu", "rtx4060ti", "--priority", "energy"], capture_output=True,
                         text=True, cwd=cwd, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "rtx4060ti-16gb" in out.stdout and "EOR" in out.stdout
    where = subprocess.run([str(py), "-c", "import recommender, recommender.paths as p; "
                            "print(recommender.__file__); print(p.data_root())"],
                           capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert str(ROOT) not in where.stdout, where.stdout  # the installed copy and its shipped data
    out = subprocess.run([str(script), "--gpu", "rtx4060x"], capture_output=True, text=True, cwd=cwd, env=env,
                         timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: unknown GPU 'rtx4060x'")


@needs_shipped
def test_catalogue_changed_since_training_warns(capsys, tmp_path, monkeypatch):
    """A refitted engines.yaml without a retrain shifts every served feature: `recommend` says so (stderr and
    the JSON query's `warnings`); the shipped, matching catalogue gives no warning."""
    import shutil

    from recommender import paths
    from recommender.catalog import load_catalog

    code, out, err = invoke(capsys, "--gpu", "h100", "--top", "1", "--format", "json")
    assert code == 0 and "warning" not in err and json.loads(out)["query"]["warnings"] == []
    data = tmp_path / "datasets"
    shutil.copytree(paths.data_root(), data, ignore=shutil.ignore_patterns("measurements"))
    (data / "measurements").mkdir()
    eng = data / "catalog" / "engines.yaml"
    text = eng.read_text(encoding="utf-8")
    changed = re.sub(r"roofline_efficiency: [0-9.]+", "roofline_efficiency: 0.5", text, count=1)
    assert changed != text
    eng.write_text(changed, encoding="utf-8")
    monkeypatch.setenv("RECOMMENDER_DATA_DIR", str(data))

    def run(*args):
        paths.data_root.cache_clear()
        load_catalog.cache_clear()
        try:
            return invoke(capsys, *args)
        finally:
            paths.data_root.cache_clear()
            load_catalog.cache_clear()

    try:
        code, out, err = run("--gpu", "h100", "--top", "1", "--format", "json")
        assert code == 0, err
        assert "warning: engines.yaml changed since the cost model" in err
        warnings = json.loads(out)["query"]["warnings"]
        assert len(warnings) == 1 and warnings[0].startswith("engines.yaml changed")
        # when nothing meets the constraints, the warning still comes before the error
        code, out, err = run("--gpu", "h100", "--max-latency-ms", "0.001")
        assert code == 2 and err.index("warning: engines.yaml changed") < err.index("error: no candidate")
        # a deleted catalogue file counts as changed
        (data / "catalog" / "method_overhead.csv").unlink()
        code, out, err = run("--gpu", "h100", "--top", "1", "--format", "json")
        assert code == 0, err
        assert json.loads(out)["query"]["warnings"][0].startswith("engines.yaml, method_overhead.csv changed")
    finally:
        monkeypatch.delenv("RECOMMENDER_DATA_DIR")
        paths.data_root.cache_clear()
        load_catalog.cache_clear()
