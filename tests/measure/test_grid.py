"""Grid spec: YAML loading, validation messages, overrides, expansion and ordering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from measure.cell import Cell
from measure.grid import (
    CooldownSpec,
    GridError,
    GridSpec,
    Workload,
    expand,
    expansion_report,
    load_grid,
    order_cells,
    parse_overrides,
    validate_cell_args,
)
from recommender.catalog import Catalog, Engine, Gpu, Model, Quant, load_catalog

GRIDS = Path(__file__).resolve().parents[2] / "measure" / "grids"
PAPER_MODELS = ["qwen2.5-7b-instruct", "deepseek-r1-distill-qwen-7b", "mistral-7b-instruct-v0.2",
                "neural-chat-7b-v3-3", "bloomz-7b1", "yi-6b"]
PAPER_QUANTS = ["bf16", "fp16", "bnb-int8", "torchao-int8-dyn", "bnb-nf4", "torchao-int8-wo", "torchao-fp8"]


def make_catalog(compiled_quants=("fp32", "bf16", "fp16", "torchao-int8-dyn", "torchao-int8-wo",
                                  "torchao-fp8")) -> Catalog:
    models = [Model(id="tiny-test", aliases=("tiny",), max_position_embeddings=512)]
    models += [Model(id=m, hf_id=f"org/{m}-hf", max_position_embeddings=4096) for m in PAPER_MODELS]
    quants = [Quant(id=q) for q in ("fp32", "bf16", "fp16", "bnb-int8", "bnb-nf4", "torchao-int8-dyn",
                                    "torchao-int8-wo")]
    quants.append(Quant(id="torchao-fp8", min_compute_capability=8.9))
    engines = [Engine(id="hf-eager", measurable=True),
               Engine(id="hf-compiled", measurable=True, supported_quants=tuple(compiled_quants)),
               Engine(id="tensorrt-llm", measurable=False)]
    gpus = [Gpu(id="h100-sxm", name="NVIDIA H100 80GB HBM3", aliases=("h100",), compute_capability=9.0),
            Gpu(id="a100-sxm4-80gb", aliases=("a100",), compute_capability=8.0)]
    return Catalog(gpus=gpus, models=models, quants=quants, engines=engines, profiles=[])


@pytest.fixture
def cat() -> Catalog:
    return make_catalog()


def base(**kw) -> dict:
    d = {"name": "t", "models": ["tiny-test"], "quants": ["fp32", "bf16"], "engines": ["hf-eager"],
         "batch_sizes": [1, 2], "workloads": [{"prompt_tokens": 16, "output_tokens": 8}]}
    d.update(kw)
    return d


def write(tmp_path: Path, data: dict, name: str = "grid.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


# ---------------------------------------------------------------------------------------------- loading
def test_shipped_grids_load_and_expand(cat):
    paper = GridSpec.from_yaml(GRIDS / "paper.yaml")
    assert paper.models == PAPER_MODELS and paper.quants == PAPER_QUANTS
    assert paper.engines == ["hf-eager", "hf-compiled"] and paper.batch_sizes == [1, 8, 32]
    assert paper.workloads == [Workload(256, 128), Workload(1024, 256)]
    assert paper.repetitions == 3 and paper.cooldown.mode == "adaptive"
    cells = expand(paper, cat)
    # bnb-int8 and bnb-nf4 are not in hf-compiled's supported list of this test catalogue
    assert len(cells) == 6 * (7 + 5) * 3 * 2
    assert not any(c.engine == "hf-compiled" and c.quant.startswith("bnb") for c in cells)

    smoke = GridSpec.from_yaml(GRIDS / "smoke-cpu.yaml")
    cells = expand(smoke, cat)
    assert [(c.quant, c.batch_size) for c in cells] == [("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)]
    assert {c.model for c in cells} == {"tiny-test"} and smoke.cooldown.mode == "none"
    assert all(c.repetitions == 3 and c.engine == "hf-eager" for c in cells)


def test_shipped_grids_against_the_real_catalogue():
    from recommender.catalog import load_catalog

    try:
        real = load_catalog()
        real.model("tiny-test")
        real.engine("hf-eager")
    except Exception as e:  # the catalogue data is written separately
        pytest.skip(f"shipped catalogue not complete yet: {e}")
    names = sorted(p.name for p in GRIDS.glob("*.yaml"))
    assert {"paper.yaml", "smoke-cpu.yaml", "h100-campaign.yaml", "h100-compiled-nf4-pairs.yaml"} <= set(names)
    for name in names:  # every shipped grid loads against the shipped catalogue, its cells all distinct
        cells = expand(GridSpec.from_yaml(GRIDS / name), real)
        assert cells and len({c.content_hash for c in cells}) == len(cells), name


def test_round_trip_and_defaults(tmp_path, cat):
    spec = load_grid(write(tmp_path, base(workloads=["16/8", {"prompt_tokens": 32, "output_tokens": 4}])),
                     catalog=cat)
    assert spec.workloads == [Workload(16, 8), Workload(32, 4)]
    assert spec.repetitions == 3 and spec.weights == "random" and spec.order == "grouped"
    assert spec.source_path.endswith("grid.yaml")
    again = GridSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())), source=spec.source_path)
    assert again == spec
    assert [c.content_hash for c in expand(again, cat)] == [c.content_hash for c in expand(spec, cat)]


def test_a_grid_may_not_contradict_an_engine_variants_own_params(tmp_path):
    real = load_catalog()
    grid = base(engines=["hf-compiled-gqa"], engine_params={"hf-compiled-gqa": {"sdpa_gqa": "auto"}})
    with pytest.raises(GridError, match="contradict the engine variant's own .* use hf-compiled with those params"):
        load_grid(write(tmp_path, grid), catalog=real)
    ok = base(engines=["hf-compiled-gqa"], engine_params={"hf-compiled-gqa": {"sdpa_gqa": "force", "mode": "default"}})
    assert load_grid(write(tmp_path, ok), catalog=real).engine_params == {
        "hf-compiled-gqa": {"sdpa_gqa": "force", "mode": "default"}}


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("data, message", [
    (base(quants=["fp32", "bf16", "bnb-int9"]),
     "grid.yaml: quants[2]: unknown quantization 'bnb-int9'; did you mean 'bnb-int8'"),
    (base(engines=["hf-eagre"]), "grid.yaml: engines[0]: unknown engine 'hf-eagre'; did you mean 'hf-eager'"),
    (base(models=["tiny-test", "tiny-tset"]), "grid.yaml: models[1]: unknown model 'tiny-tset'"),
    (base(models=["some-org/not-here"]), "write {hub: some-org/not-here}"),
    (base(models=[{"path": "/no/such/model/dir"}]), "models[0]: local model path '/no/such/model/dir' does not exist"),
    (base(engines=["tensorrt-llm"]), "engines[0]: engine 'tensorrt-llm' is catalogue-only"),
    (base(gpus=["h1000"]), "grid.yaml: gpus[0]: unknown GPU 'h1000'"),
    (base(workloads=[{"prompt_tokens": 500, "output_tokens": 100}]),
     "prompt_tokens + output_tokens = 600 exceeds tiny-test's max_position_embeddings 512"),
    (base(max_context=20), "exceeds max_context 20"),
    (base(exclude=[{"quant": "bnb-int9"}]), "exclude[0].quant: unknown quantization 'bnb-int9'"),
    (base(exclude=[{"model": "yi-6x"}]), "exclude[0].model: unknown model 'yi-6x'"),
    (base(quants=["fp32", "FP32"]), "quants: listed twice: fp32"),
    (base(exclude=[{"engine": "hf-eager"}]), "expands to no cells (4 excluded"),
])
def test_validation_names_file_and_field(tmp_path, cat, data, message):
    path = write(tmp_path, data)
    with pytest.raises(GridError) as ei:
        load_grid(path, catalog=cat)
    assert message in str(ei.value)
    assert str(ei.value).startswith(str(path))
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("data, message", [
    (base(engnes=["hf-eager"]), "unknown key 'engnes'; did you mean 'engines'?"),
    (base(batch_sizes="8"), "batch_sizes[0]: expected an integer, got str '8'"),
    (base(batch_sizes=[1, 0]), "batch_sizes[1]: must be a positive integer, got 0"),
    (base(batch_sizes=[True]), "batch_sizes[0]: expected an integer, got bool"),
    (base(repetitions=0), "repetitions: must be >= 1, got 0"),
    (base(repetitions="3"), "repetitions: expected an integer"),
    (base(workloads=[{"prompt_tokens": 0, "output_tokens": 8}]), "workloads[0].prompt_tokens: must be a positive"),
    (base(workloads=[{"prompt_tokens": 8}]), "workloads[0]: output_tokens is required"),
    (base(workloads=[{"prompt": 8, "output_tokens": 8}]), "workloads[0]: unknown key 'prompt'"),
    (base(workloads=["16x8"]), "workloads[0]: expected {prompt_tokens: N, output_tokens: M} or 'N/M'"),
    (base(weights="fake"), "weights: must be one of random, real"),
    (base(cooldown={"mode": "sometimes"}), "cooldown.mode: must be one of fixed, adaptive, none"),
    (base(cooldown={"secs": 3}), "cooldown: unknown key 'secs'; did you mean 'seconds'?"),
    (base(order="shuffled"), "order: must be one of grouped, random"),
    (base(resume_per="machine"), "resume_per: must be one of card, gpu"),
    (base(quant_params=["x"]), "quant_params: expected a mapping"),
    (base(exclude=[{"quantization": "fp32"}]), "exclude[0]: unknown key 'quantization'; did you mean 'quant'?"),
    (base(models=[{"path": "a", "hub": "b"}]), "models[0]: give exactly one of id, path or hub"),
    (base(quants=[]), "quants: at least one entry is required"),
    ({"models": ["tiny-test"]}, "quants: at least one entry is required"),
])
def test_structure_errors_need_no_catalogue(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(GridError) as ei:
        GridSpec.from_yaml(path)
    assert message in str(ei.value)
    assert str(ei.value).startswith(f"{path}: ")


def test_unreadable_files(tmp_path):
    with pytest.raises(GridError, match="cannot read the grid file"):
        GridSpec.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a, b\n")
    with pytest.raises(GridError, match="not valid YAML"):
        GridSpec.from_yaml(bad)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(GridError, match="empty"):
        GridSpec.from_yaml(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(GridError, match="must be a mapping"):
        GridSpec.from_yaml(tmp_path / "list.yaml")


def test_warnings_do_not_stop(cat):
    spec = GridSpec.from_dict(base(repetitions=2, tasks=["arc_challenge"], quant_params={"fp16": {"a": 1}}))
    warns = spec.validate(cat)
    assert any("repetitions: 2 < 3" in w for w in warns)
    assert any("random-weight" in w for w in warns)
    assert any("quant_params.fp16" in w for w in warns)


# ---------------------------------------------------------------------------------------------- models
def test_local_path_and_hub_models(tmp_path, cat):
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"max_position_embeddings": 64}))
    spec = GridSpec.from_dict(base(models=[{"path": str(local), "weights": "real"}, {"hub": "org/x"},
                                           str(local)]))
    with pytest.raises(GridError, match="models: listed twice"):
        expand(spec, cat)
    spec = spec.override(models=[{"path": str(local), "weights": "real"}, {"hub": "org/x", "weights": "real"}])
    cells = expand(spec, cat)
    assert {(c.model, c.weights) for c in cells} == {(str(local), "real"), ("org/x", "real")}
    too_long = spec.override(workloads=["60/8"])
    with pytest.raises(GridError, match="exceeds .*my-model's max_position_embeddings 64"):
        expand(too_long, cat)


def test_aliases_and_hf_ids_resolve_to_catalogue_ids(cat):
    spec = GridSpec.from_dict(base(models=["tiny", "org/yi-6b-hf"], quants=["FP32"], engines=["HF-Eager"],
                                   gpus=["h100"]))
    cells = expand(spec, cat)
    assert {c.model for c in cells} == {"tiny-test", "yi-6b"}
    assert {(c.quant, c.engine, c.gpu) for c in cells} == {("fp32", "hf-eager", "h100-sxm")}


# ---------------------------------------------------------------------------------------------- expansion
def test_expand_excludes_unsupported_and_order(cat):
    spec = GridSpec.from_dict(base(
        models=["tiny-test", "yi-6b"], quants=["bf16", "bnb-nf4", "torchao-fp8"],
        engines=["hf-eager", "hf-compiled"], batch_sizes=[1, 8], workloads=["16/8", "64/16"],
        exclude=[{"quant": "torchao-fp8", "engine": "hf-eager"},
                 {"model": "yi-6b", "batch_size": [8], "prompt_tokens": 64}]))
    cells = expand(spec, cat)
    combos = {(c.model, c.quant, c.engine) for c in cells}
    assert ("tiny-test", "torchao-fp8", "hf-eager") not in combos  # excluded
    assert ("tiny-test", "bnb-nf4", "hf-compiled") not in combos  # engines.yaml: unsupported
    assert ("tiny-test", "torchao-fp8", "hf-compiled") in combos
    assert not any(c.model == "yi-6b" and c.batch_size == 8 and c.prompt_tokens == 64 for c in cells)
    # 2 models x 4 pairs x 2 batches x 2 workloads = 32, minus yi-6b's 4 pairs x (b8, p64) = 28
    assert len(cells) == 28
    rep = expansion_report(spec, cat)
    assert rep["cells"] == 28 and rep["excluded"] == 2 * 2 * 2 + 4 and rep["unsupported"] == 2
    # deterministic, unique, and groups (one loaded model) contiguous
    assert [c.content_hash for c in expand(spec, cat)] == [c.content_hash for c in cells]
    assert len({c.content_hash for c in cells}) == len(cells)
    keys = [c.group_key for c in cells]
    starts = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(starts) == len(set(keys))
    first = cells[0]
    assert (first.model, first.quant, first.engine, first.batch_size, first.prompt_tokens) == \
        ("tiny-test", "bf16", "hf-eager", 1, 16)


def test_expand_gpus_respects_compute_capability(cat):
    spec = GridSpec.from_dict(base(quants=["bf16", "torchao-fp8"], batch_sizes=[1], gpus=["h100", "a100"]))
    cells = expand(spec, cat)
    assert {(c.gpu, c.quant) for c in cells} == {("h100-sxm", "bf16"), ("h100-sxm", "torchao-fp8"),
                                                ("a100-sxm4-80gb", "bf16")}
    ex = GridSpec.from_dict(base(quants=["bf16"], gpus=["h100", "a100"], exclude=[{"gpu": "a100"}]))
    assert {c.gpu for c in expand(ex, cat)} == {"h100-sxm"}


def test_cell_fields_follow_the_spec(cat):
    spec = GridSpec.from_dict(base(
        repetitions=5, warmup=2, seed=7, weights="real", quant_params={"bf16": {"x": 1}},
        engine_params={"hf-eager": {"attn": "sdpa"}}, tasks=["arc_challenge"], eval_limit=50,
        batch_sizes=[1, 2]))
    cells = expand(spec, cat)
    assert all((c.repetitions, c.warmup, c.seed, c.weights) == (5, 2, 7, "real") for c in cells)
    assert [c.quant_params for c in cells if c.quant == "bf16"] == [{"x": 1}, {"x": 1}]
    assert all(c.quant_params == {} for c in cells if c.quant == "fp32")
    assert all(c.engine_params == {"attn": "sdpa"} for c in cells)
    # accuracy once per model x quant group (the first cell), unless tasks_on: all
    assert [(c.quant, c.batch_size) for c in cells if c.tasks] == [("fp32", 1), ("bf16", 1)]
    assert all(c.eval_limit == 50 for c in cells if c.tasks)
    all_cells = expand(spec.override(tasks_on="all"), cat)
    assert all(c.tasks == ("arc_challenge",) for c in all_cells)
    # quant_params change the hash and the group
    other = expand(spec.override(quant_params={"bf16": {"x": 2}}), cat)
    assert {c.content_hash for c in other if c.quant == "bf16"}.isdisjoint(
        {c.content_hash for c in cells if c.quant == "bf16"})


# ---------------------------------------------------------------------------------------------- overrides
def test_override_and_parse(tmp_path, cat):
    spec = GridSpec.from_dict(base(), source="g.yaml")
    s2 = spec.override(repetitions=5, **{"cooldown.mode": "none", "batch-sizes": [4]})
    assert (s2.repetitions, s2.cooldown.mode, s2.batch_sizes) == (5, "none", [4])
    assert spec.repetitions == 3 and spec.cooldown == CooldownSpec()  # original untouched
    assert s2.override(cooldown={"seconds": 10}).cooldown == CooldownSpec(mode="none", seconds=10.0)
    with pytest.raises(GridError, match=r"g.yaml \(override\): unknown key 'repetitons'; did you mean 'repetitions'"):
        spec.override(repetitons=5)
    with pytest.raises(GridError, match=r"g.yaml \(override\): repetitions: must be >= 1"):
        spec.override(repetitions=0)
    with pytest.raises(GridError, match="repetitions: expected an integer, got null"):
        spec.override(repetitions=None)
    assert spec.override(gpus=["h100"]).override(gpus=None).gpus is None
    with pytest.raises(GridError, match="cooldown: unknown key 'mod'"):
        spec.override(**{"cooldown.mod": "none"})
    ov = parse_overrides(["repetitions=5", "cooldown.mode=none", "batch_sizes=[1, 8]", "description="])
    assert ov == {"repetitions": 5, "cooldown.mode": "none", "batch_sizes": [1, 8], "description": None}
    with pytest.raises(GridError, match="expected KEY=VALUE"):
        parse_overrides(["repetitions"])
    p = write(tmp_path, base())
    loaded = load_grid(p, ["repetitions=4", "cooldown=none"], catalog=cat)
    assert loaded.repetitions == 4 and loaded.cooldown.mode == "none"
    assert expand(loaded, cat)[0].repetitions == 4


def test_cooldown_shorthands():
    assert GridSpec.from_dict(base(cooldown="none")).cooldown.mode == "none"
    assert GridSpec.from_dict(base(cooldown=False)).cooldown.mode == "none"
    assert GridSpec.from_dict(base(cooldown=60)).cooldown == CooldownSpec(mode="fixed", seconds=60.0)
    with pytest.raises(GridError, match="cooldown.cap_s: must be >= 0"):
        GridSpec.from_dict(base(cooldown={"cap_s": -1}))


# ---------------------------------------------------------------------------------------------- measure run
def test_validate_cell_args(cat):
    cell = validate_cell_args("tiny", "BF16", "hf-eager", 2, 16, 8, repetitions=4, gpu="h100", catalog=cat)
    assert isinstance(cell, Cell)
    assert (cell.model, cell.quant, cell.engine, cell.gpu, cell.repetitions) == \
        ("tiny-test", "bf16", "hf-eager", "h100-sxm", 4)
    with pytest.raises(GridError, match=r"^measure run: --quant: unknown quantization 'bnb-int9'; did you mean"):
        validate_cell_args("tiny-test", "bnb-int9", "hf-eager", 1, 16, 8, catalog=cat, labels={"quant": "--quant"})
    with pytest.raises(GridError, match="engine 'hf-compiled' does not support quantization 'bnb-nf4'"):
        validate_cell_args("tiny-test", "bnb-nf4", "hf-compiled", 1, 16, 8, catalog=cat)
    with pytest.raises(GridError, match="batch_size: must be a positive integer, got 0"):
        validate_cell_args("tiny-test", "fp32", "hf-eager", 0, 16, 8, catalog=cat)
    with pytest.raises(GridError, match="exceeds tiny-test's max_position_embeddings 512"):
        validate_cell_args("tiny-test", "fp32", "hf-eager", 1, 510, 8, catalog=cat)
    with pytest.raises(GridError, match="repetitions: must be >= 1"):
        validate_cell_args("tiny-test", "fp32", "hf-eager", 1, 16, 8, repetitions=0, catalog=cat)
    # the same arguments give the same cell hash as the grid
    grid_cell = expand(GridSpec.from_dict(base(quants=["fp32"], batch_sizes=[1])), cat)[0]
    assert validate_cell_args("tiny-test", "fp32", "hf-eager", 1, 16, 8, catalog=cat) == grid_cell


# ---------------------------------------------------------------------------------------------- ordering
def test_order_cells_random_keeps_groups_and_is_reproducible(cat):
    spec = GridSpec.from_dict(base(models=PAPER_MODELS[:3], quants=["bf16", "fp16", "bnb-int8"],
                                   batch_sizes=[1, 2, 4]))
    cells = expand(spec, cat)
    assert order_cells(cells) == cells
    a = order_cells(cells, "random", seed=1)
    assert a == order_cells(cells, "random", seed=1) and a != cells
    assert sorted(c.content_hash for c in a) == sorted(c.content_hash for c in cells)
    keys = [c.group_key for c in a]
    assert len([k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]) == len(set(keys))
    inner = order_cells(cells, "random", seed=3, shuffle_within_group=True)
    by_group = {}
    for c in inner:
        by_group.setdefault(c.group_key, []).append(c.batch_size)
    assert any(v != sorted(v) for v in by_group.values())
    with pytest.raises(GridError):
        order_cells(cells, "sideways")
