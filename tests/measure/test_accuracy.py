"""measure.accuracy: lm-eval on the loaded tiny model, offline, with local tasks."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from measure import accuracy  # noqa: E402
from measure.accuracy import AccuracyResult, UnknownTaskError, evaluate  # noqa: E402

LOCAL = ["local_arc_mini", "local_arith_mini"]


class FakeWindow:
    """Meter window stand-in: 50 W for the wall time of the block."""

    def __init__(self, name: str, seen: list[dict]):
        self.name, self.seen = name, seen
        self.energy_j: float | None = None
        self.duration_s: float | None = None

    def __enter__(self) -> FakeWindow:
        self._t0 = time.perf_counter()
        self.seen.append(
            {
                "name": self.name,
                "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
                "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE"),
            }
        )
        return self

    def __exit__(self, *exc) -> None:
        self.duration_s = time.perf_counter() - self._t0
        self.energy_j = 50.0 * self.duration_s


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return model, tokenizer


def test_local_tasks_offline_with_meter(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.chdir(tmp_path)  # data_files must not depend on the working directory
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    import huggingface_hub.constants as hub_constants

    hub_before = hub_constants.HF_HUB_OFFLINE
    seen: list[dict] = []
    results = evaluate(
        model,
        tokenizer,
        LOCAL,
        limit=4,
        batch_size=2,
        offline=True,
        meter_window=lambda name: FakeWindow(name, seen),
    )
    assert [r.task for r in results] == LOCAL
    by_task = {r.task: r for r in results}
    assert by_task["local_arc_mini"].metric == "acc"  # fallback for local tasks
    assert by_task["local_arith_mini"].metric == "exact_match,first-number"  # YAML metadata.primary_metric
    for r in results:
        assert isinstance(r, AccuracyResult)
        assert 0.0 <= r.accuracy <= 1.0
        assert r.n_samples == 4
        assert r.eval_time_s > 0
        assert r.eval_energy_j is not None and r.eval_energy_j > 0
        assert r.eval_energy_wh == pytest.approx(r.eval_energy_j / 3600)
        assert r.num_fewshot == 0 and r.limit == 4
        assert r.accuracy_stderr is None or math.isfinite(r.accuracy_stderr)
        assert r.lm_eval_version.startswith("0.4")
        json.dumps(r.to_dict())
    # the window saw offline mode; afterwards everything is as before
    assert [s["name"] for s in seen] == [f"eval:{t}" for t in LOCAL]
    assert all(s["HF_HUB_OFFLINE"] == "1" and s["HF_DATASETS_OFFLINE"] == "1" for s in seen)
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert "HF_DATASETS_OFFLINE" not in os.environ
    assert hub_constants.HF_HUB_OFFLINE is hub_before


def test_no_meter_full_split_and_fewshot(tiny):
    model, tokenizer = tiny
    (r,) = evaluate(model, tokenizer, ["local_arc_mini"], limit=None, batch_size=4, num_fewshot=2, seed=1)
    assert r.n_samples == 20 and r.eval_energy_j is None and r.num_fewshot == 2
    assert set(r.metrics) == {"acc,none", "acc_norm,none"}


def test_scoring_pipeline_with_oracle(tiny, monkeypatch):
    """An LM that always answers right scores 1.0: task files, filters and metric pick are consistent."""
    from lm_eval.models.huggingface import HFLM

    def loglikelihood(self, requests, disable_tqdm=False):
        out = []
        for req in requests:
            right = req.doc["choices"][req.doc["answer"]]
            out.append((0.0 if req.args[1].strip() == right else -10.0, True))
        return out

    def generate_until(self, requests, disable_tqdm=False):
        return [f" {req.doc['answer']}\n" for req in requests]

    monkeypatch.setattr(HFLM, "loglikelihood", loglikelihood)
    monkeypatch.setattr(HFLM, "generate_until", generate_until)
    model, tokenizer = tiny
    results = evaluate(model, tokenizer, LOCAL, limit=5, offline=True)
    assert [(r.task, r.accuracy, r.n_samples) for r in results] == [(t, 1.0, 5) for t in LOCAL]


def test_include_path_relative_data_files_and_group(tiny, tmp_path, monkeypatch):
    tasks_dir = tmp_path / "mytasks"
    (tasks_dir / "data").mkdir(parents=True)
    rows = [{"question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2} for i in range(6)]
    (tasks_dir / "data" / "parity.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tasks_dir / "parity.yaml").write_text(
        "task: tmp_parity\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/parity.jsonl\n"
        "output_type: multiple_choice\ntest_split: test\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\n'
        "doc_to_target: answer\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n"
    )
    (tasks_dir / "group.yaml").write_text(
        "group: tmp_mc_group\ntask:\n  - tmp_parity\n  - local_arc_mini\n"
        "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 1.0\n"
    )
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    model, tokenizer = tiny
    assert {"tmp_parity", "tmp_mc_group", *LOCAL} <= set(accuracy.local_tasks(tasks_dir))
    single, group = evaluate(
        model, tokenizer, ["tmp_parity", "tmp_mc_group"], limit=3, include_path=str(tasks_dir), offline=True
    )
    assert single.n_samples == 3 and single.metric == "acc"
    assert group.task == "tmp_mc_group" and group.n_samples == 6  # limit applies per leaf task
    assert 0.0 <= group.accuracy <= 1.0


def test_unknown_task_names_it_with_suggestions(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="local_arc_mni") as info:
        evaluate(model, tokenizer, ["local_arc_mni"], limit=2, include_defaults=False)
    assert isinstance(info.value, UnknownTaskError)
    assert "local_arc_mini" in info.value.suggestions
    assert "searched only the local tasks" in str(info.value)


@pytest.mark.slow
def test_unknown_task_searches_lm_eval_tasks(tiny):
    """Indexing lm-eval's built-in task configs takes ~8 s on a small CPU."""
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="arc_challeng") as info:
        evaluate(model, tokenizer, ["arc_challeng"], limit=2, offline=True)
    assert "arc_challenge" in info.value.suggestions


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_limit(tiny, bad):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="limit"):
        evaluate(model, tokenizer, ["local_arc_mini"], limit=bad)


def test_bad_include_path(tiny, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="include_path"):
        evaluate(model, tokenizer, ["local_arc_mini"], limit=1, include_path=tmp_path / "missing")


def test_offline_mode_restores_on_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    with pytest.raises(RuntimeError), accuracy.offline_mode(True):
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        import datasets.config

        assert datasets.config.HF_HUB_OFFLINE is True
        raise RuntimeError("boom")
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["HF_DATASETS_OFFLINE"] == "0"


class _FakeTask:
    def __init__(self, meta=None):
        self.meta = meta or {}

    def get_config(self, key):
        return self.meta if key == "metadata" else None


@pytest.mark.parametrize(
    ("task", "metrics", "want"),
    [
        (
            "gsm8k",
            {"exact_match,strict-match": 0.5, "exact_match,flexible-extract": 0.6},
            "exact_match,strict-match",
        ),
        ("arc_challenge", {"acc,none": 0.4, "acc_norm,none": 0.45}, "acc_norm,none"),
        ("hellaswag", {"acc,none": 0.4, "acc_norm,none": 0.45}, "acc_norm,none"),
        ("mmlu", {"acc,none": 0.6}, "acc,none"),
        ("truthfulqa_mc2", {"acc,none": 0.5}, "acc,none"),
        ("some_local", {"acc_norm,none": 0.3, "acc,none": 0.2}, "acc,none"),
        ("gen_local", {"exact_match,x": 0.1}, "exact_match,x"),
    ],
)
def test_primary_metric(task, metrics, want):
    assert accuracy._primary_key(task, metrics, {"tasks": {task: _FakeTask()}}) == want


def test_record_fields_fit_the_record():
    from measure.record import Record

    r = AccuracyResult("gsm8k", "exact_match,strict-match", 0.5, 0.01, 10, 2.0, 360.0, "0.4.13")
    rec = Record(
        cell_hash="x", model="m", quant="fp16", engine="hf-eager", batch_size=1, prompt_tokens=1,
        output_tokens=1, status="skipped", error="accuracy only", **r.to_record_fields(),
    )  # fmt: skip
    rec.validate()
    assert rec.accuracy_metric == "exact_match,strict-match" and rec.eval_energy_j == 360.0
    assert r.eval_energy_wh == pytest.approx(0.1)
