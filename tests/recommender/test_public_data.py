"""datasets/public: schema, provenance, no silent drops, conversions (on a tiny synthetic source tree)."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest

from recommender import public_data as P
from recommender.catalog import load_catalog_from
from recommender.costmodel.features import SCOPES
from recommender.paths import catalog_dir, data_root

PUBLIC = data_root() / "public"
SHARED = Path("/work/shared/data/public")


def _rows(name):
    with (PUBLIC / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def catalog():
    return P.extend_catalog(load_catalog_from(catalog_dir()), PUBLIC)


def test_every_file_has_the_record_columns():
    for name in (*P.OUTPUTS, P.EXCLUDED):
        with (PUBLIC / name).open(newline="", encoding="utf-8") as fh:
            assert tuple(next(csv.reader(fh))) == P.COLUMNS, name


def test_kept_rows_are_cited_scoped_and_resolvable(catalog):
    for name in P.OUTPUTS:
        rows = _rows(name)
        assert rows, name
        for r in rows:
            assert r["excluded_reason"] == ""
            assert "@" in r["source"] and ":" in r["source"] and r["licence"] in ("Apache-2.0", "BSD-3-Clause")
            assert r["scope_id"] in SCOPES and r["measurement_scope"]
            assert r["gpu_id"] in catalog.gpus.index and r["model"] in catalog.models.index
            assert r["quant"] in catalog.quants.index and r["engine"] in catalog.engines.index
            assert float(r["num_gpus"]) == 1
            assert r["tokens_per_s"] or r["energy_per_token_j"] or r["ttft_ms"]
            assert r["decode_energy_per_token_j"] == ""  # no public source separates decode energy


def test_excluded_rows_say_why():
    rows = _rows(P.EXCLUDED)
    assert rows and all(r["excluded_reason"] for r in rows)


def test_no_row_is_dropped_silently():
    """Every source row id appears exactly once over kept + excluded files, with the source's counts."""
    ids = [r["row_id"] for name in (*P.OUTPUTS, P.EXCLUDED) for r in _rows(name)]
    assert len(ids) == len(set(ids))
    by_ds: dict[str, int] = {}
    for i in ids:
        by_ds[i.split(":")[0]] = by_ds.get(i.split(":")[0], 0) + 1
    # v1: 12 files x 21 models + the 2 Llama-2 chat models in 4 of them (260 data rows); v2: 314 JSON files;
    # Argonne: 4,772 All_results + 116 Fig_3 + 30 Fig_21 data rows
    assert by_ds == {"mlenergy-v1": 260, "mlenergy-v2": 314, "argonne": 4772 + 116 + 30}


@pytest.mark.skipif(not SHARED.exists(), reason="shared/data/public not present")
def test_committed_files_are_what_the_adapters_produce(tmp_path):
    (tmp_path / P.PUBLIC_MODELS).write_bytes((PUBLIC / P.PUBLIC_MODELS).read_bytes())
    P.build(SHARED, tmp_path, catalog=load_catalog_from(catalog_dir()))
    for name in (*P.OUTPUTS, P.EXCLUDED):
        assert (tmp_path / name).read_bytes() == (PUBLIC / name).read_bytes(), name


def test_public_models_cite_a_config_and_count_parameters():
    spec = importlib.util.spec_from_file_location("compute_params", catalog_dir() / "tools" / "compute_params.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    models = _rows(P.PUBLIC_MODELS)
    catalogue_ids = {r["id"] for r in csv.DictReader((catalog_dir() / "models.csv").open(encoding="utf-8"))}
    # every `;`-separated item names where the shape was read: a URL or repository@40-hex-commit:path
    located = re.compile(r"^(https://\S+|[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S+)( \(.+\))?$")
    for r in models:
        items = [s.strip() for s in _split_sources(r["config_source"])]
        assert items and all(located.match(s) for s in items), (r["id"], items)
        assert r["params_b"] == tool.format_b(tool.param_count(r))
        assert r["id"] not in catalogue_ids  # no duplicate of a catalogue row


def _split_sources(text: str) -> list[str]:
    """Split `a (x; y); b` on the semicolons outside parentheses."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == ";" and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return [*items, cur]


# ---- conversions, on a tiny synthetic source tree ----------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture()
def fake_source(tmp_path):
    src = tmp_path / "src"
    legacy = "ml-energy-leaderboard-v2/data/legacy/A40_chat_benchmark.csv"
    _write(src / legacy, "model,throughput,response_length,latency,energy\n"
                         "lmsys/vicuna-7B,30.0,300.0,10.0,2400.0\nRWKV/rwkv-raven-7b,60,200,3,700\n")
    v2 = "ml-energy-leaderboard-v2/data/llm_text_generation/chat/H100-80GB-HBM3/meta-llama/Meta-Llama-3.1-8B-Instruct"
    run = {"Model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "GPU": "NVIDIA H100 80GB HBM3", "PP": 1,
           "Energy/req (J)": 100.0, "Avg TPOT (s)": 0.05, "Token tput (tok/s)": 2000.0, "Avg Output Tokens": 400.0,
           "Avg BS (reqs)": 63.5, "Max BS (reqs)": 64}
    _write(src / v2 / "bs64+tp1+pp1.json", json.dumps({**run, "TP": 1}))
    _write(src / v2 / "bs64+tp2+pp1.json", json.dumps({**run, "TP": 2}))
    plots = "argonne-llm-inference-bench/Plots"
    head = "Hardware,Num of Hardware,Framework,Model,Input Output Length,Batch Size,Latency,Throughput"
    _write(src / plots / "All_results.csv", head + "\n"
           "Nvidia H100 GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,128,16,2.0,2048.0\n"
           "Nvidia H100 GPU,2,vLLM,meta-llama/Meta-Llama-3-8B,128,16,1.5,2730.67\n"
           "AMD MI300X GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,128,16,2.5,1638.4\n"
           "Nvidia A100 GPU,1,llama.cpp,meta-llama/Meta-Llama-3-8B,128,16,2.0,100.0\n")
    _write(src / plots / "Fig_16_a_b/power_results.csv", head + ",avg_power\n\n"
           "Nvidia H100 GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,128,16,2.0,2048.0,450000.0\n")
    _write(src / plots / "Fig_3/A100_H100_quant_all_results.csv",
           "Hardware,Num of Hardware,Framework,Model,Input Output Length,Batch Size,kv_cache_dtype,latency,throughput\n\n"
           'Nvidia H100 GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,128,1,"Weight = fp8, KV Cache = fp8",1.0,256.0\n'
           'Nvidia A100 GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,128,1,"Weight = fp16, KV Cache = fp8",2.0,128.0\n')
    _write(src / plots / "Fig_21/all_results_TTFT.csv",
           "Hardware,Num of Hardware,Framework,Model,Input Length,Output Length,Batch Size,Latency\n\n"
           "Nvidia H100 GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,1024,1,16,0.42\n")
    files = [legacy, f"{v2}/bs64+tp1+pp1.json", f"{v2}/bs64+tp2+pp1.json", f"{plots}/All_results.csv",
             f"{plots}/Fig_16_a_b/power_results.csv", f"{plots}/Fig_3/A100_H100_quant_all_results.csv",
             f"{plots}/Fig_21/all_results_TTFT.csv"]
    lines = ["local_path\trepo\tsnapshot_commit\trepo_path\tlast_commit_touching_path\tbytes\tlicense"]
    lines += [f"{f}\towner/repo\tabc123\t{f.split('/', 1)[1]}\tdef\t1\tApache-2.0 (LICENSE copied)" for f in files]
    _write(src / "PROVENANCE.tsv", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / P.PUBLIC_MODELS).write_bytes((PUBLIC / P.PUBLIC_MODELS).read_bytes())
    counts = P.build(src, out, catalog=load_catalog_from(catalog_dir()))
    return out, counts


def test_conversions(fake_source):
    out, counts = fake_source
    assert counts == {"mlenergy_v1.csv": {"source_rows": 2, "kept": 1, "excluded": 1},
                      "mlenergy_v2.csv": {"source_rows": 2, "kept": 1, "excluded": 1},
                      "argonne.csv": {"source_rows": 7, "kept": 3, "excluded": 4}}
    rows = {r["row_id"]: r for name in (*P.OUTPUTS, P.EXCLUDED)
            for r in csv.DictReader((out / name).open(encoding="utf-8"))}
    v1 = rows["mlenergy-v1:A40:chat:0"]
    assert (v1["model"], v1["gpu_id"], v1["quant"], v1["engine"]) == ("llama-7b", "a40", "fp16", "hf-eager")
    assert float(v1["energy_per_token_j"]) == 8.0 and float(v1["avg_power_w"]) == 240.0
    assert v1["prompt_tokens"] == "161" and "imputed" in v1["notes"]
    assert "recurrent" in rows["mlenergy-v1:A40:chat:1"]["excluded_reason"]
    v2 = [r for k, r in rows.items() if k.startswith("mlenergy-v2") and "tp1" in k][0]
    assert float(v2["energy_per_token_j"]) == 0.25 and float(v2["batch_size"]) == 63.5 and float(v2["tpot_ms"]) == 50.0
    assert v2["source"] == ("owner/repo@abc123:data/llm_text_generation/chat/H100-80GB-HBM3/meta-llama/"
                            "Meta-Llama-3.1-8B-Instruct/bs64+tp1+pp1.json")
    assert "tensor parallel 2" in [r for k, r in rows.items() if "tp2" in k][0]["excluded_reason"]
    a = rows["argonne:All_results:0"]
    assert float(a["tokens_per_s"]) == 16 * 128 / 2.0
    assert float(a["avg_power_w"]) == 450.0  # mW -> W
    assert float(a["energy_per_token_j"]) == pytest.approx(450.0 * 2.0 / (16 * 128))
    assert "2 accelerators" in rows["argonne:All_results:1"]["excluded_reason"]
    assert "not an NVIDIA GPU" in rows["argonne:All_results:2"]["excluded_reason"]
    assert "definition is unclear" in rows["argonne:All_results:3"]["excluded_reason"]
    f3 = rows["argonne:Fig_3:0"]
    assert f3["quant"] == "torchao-fp8" and float(f3["kv_cache_bits"]) == 8.0 and f3["excluded_reason"] == ""
    assert "emulated" in rows["argonne:Fig_3:1"]["excluded_reason"]
    assert float(rows["argonne:Fig_21:0"]["ttft_ms"]) == 420.0


def test_power_rows_must_match(fake_source, tmp_path):
    out, _ = fake_source
    src = tmp_path / "src"
    p = src / "argonne-llm-inference-bench/Plots/Fig_16_a_b/power_results.csv"
    p.write_text(p.read_text().replace(",2.0,2048.0,450000.0", ",2.1,2048.0,450000.0"))
    with pytest.raises(ValueError, match="match no All_results.csv row"):
        P.build(src, out, catalog=load_catalog_from(catalog_dir()))
