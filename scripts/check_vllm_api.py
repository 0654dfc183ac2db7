"""Check measure/engines/vllm.py against a real vLLM release's sources, without a GPU or an install.

    python scripts/check_vllm_api.py vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl   # or an unpacked tree

vLLM needs a CUDA machine to run, and its wheel (~340 MB) is far over what our lent GPU machines can receive,
so the engine is tested in CI against a stand-in module. This script reads the release's Python sources
(statically, with `ast`: nothing is imported) and checks every name the engine relies on:

  * each keyword `Vllm.load_kwargs` passes to `vllm.LLM` (for every mapped quant id) is an `LLM.__init__`
    parameter or, through its `**kwargs`, an `EngineArgs` field;
  * `SamplingParams` has the fields the engine sets; `LLM.generate` takes `use_tqdm`;
  * `CompletionOutput.token_ids` and `RequestOutput.outputs`, which the engine reads;
  * the `vllm.distributed.parallel_state` functions `unload` calls;
  * which of the engine's `quantization=` names the release lists in `QuantizationMethods` (a missing one is
    reported, not an error: the engine records those cells as skips at run time).

Exit status 0 when every required name exists, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FILES = {
    "llm": "vllm/entrypoints/llm.py",
    "args": "vllm/engine/arg_utils.py",
    "sampling": "vllm/sampling_params.py",
    "outputs": "vllm/outputs.py",
    "parallel": "vllm/distributed/parallel_state.py",
    "quant": "vllm/model_executor/layers/quantization/__init__.py",
}


def read_sources(path: Path) -> dict[str, str]:
    """The source files above from a wheel (zip) or an unpacked tree; '' where a file is absent."""
    out = {}
    if path.is_file():
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for k, f in FILES.items():
                out[k] = z.read(f).decode() if f in names else ""
    else:
        for k, f in FILES.items():
            p = path / f
            out[k] = p.read_text() if p.exists() else ""
    return out


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name), None)


def _method(cls: ast.ClassDef | None, name: str) -> ast.FunctionDef | None:
    if cls is None:
        return None
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _params(fn: ast.FunctionDef | None) -> tuple[set[str], bool]:
    """(parameter names, takes **kwargs)."""
    if fn is None:
        return set(), False
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    return names, a.kwarg is not None


def _fields(cls: ast.ClassDef | None) -> set[str]:
    """Annotated class attributes (dataclass / msgspec fields) and names assigned in __init__ as self.x."""
    if cls is None:
        return set()
    out = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    init = _method(cls, "__init__")
    if init is not None:
        for n in ast.walk(init):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
                out.add(n.attr)
    return out


def _literal_strings(tree: ast.Module, name: str) -> set[str]:
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign | ast.AnnAssign):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and n.value is not None:
                return {c.value for c in ast.walk(n.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return set()


def engine_usage() -> dict[str, set[str]]:
    """What measure/engines/vllm.py passes and reads, taken from the engine itself."""
    from measure.cell import Cell
    from measure.engines.vllm import QUANTS, Vllm

    eng = Vllm()
    load_kw: set[str] = set()
    for quant, (_, _, needs_real) in QUANTS.items():
        cell = Cell("some/model" if needs_real else "tiny-test", quant, "vllm", 1, 8, 8,
                    weights="real" if needs_real else "random")
        load_kw |= set(eng.load_kwargs(cell, "/model", 4096))
    return {"load_kwargs": load_kw,
            "sampling": {"max_tokens", "min_tokens", "ignore_eos", "temperature"},
            "quantizations": {q for _, q, _ in QUANTS.values() if q}}


def check(src: dict[str, str]) -> tuple[list[str], list[str]]:
    """(errors, notes)."""
    errors, notes = [], []
    use = engine_usage()
    trees = {k: ast.parse(v) if v else None for k, v in src.items()}
    for k, f in FILES.items():
        if trees[k] is None:
            errors.append(f"{f} not found")
    if errors:
        return errors, notes
    llm = _class(trees["llm"], "LLM")
    init_params, takes_kwargs = _params(_method(llm, "__init__"))
    engine_args = _fields(_class(trees["args"], "EngineArgs"))
    for k in sorted(use["load_kwargs"]):
        if k in init_params:
            notes.append(f"LLM(..., {k}=): an LLM.__init__ parameter")
        elif takes_kwargs and k in engine_args:
            notes.append(f"LLM(..., {k}=): an EngineArgs field (through **kwargs)")
        else:
            errors.append(f"LLM(..., {k}=): neither an LLM.__init__ parameter nor an EngineArgs field")
    gen_params, _ = _params(_method(llm, "generate"))
    if "use_tqdm" not in gen_params:
        errors.append("LLM.generate has no use_tqdm parameter")
    sp = _fields(_class(trees["sampling"], "SamplingParams"))
    errors += [f"SamplingParams has no field {f!r}" for f in sorted(use["sampling"] - sp)]
    if "token_ids" not in _fields(_class(trees["outputs"], "CompletionOutput")):
        errors.append("CompletionOutput has no token_ids")
    if "outputs" not in _fields(_class(trees["outputs"], "RequestOutput")):
        errors.append("RequestOutput has no outputs")
    funcs = {n.name for n in trees["parallel"].body if isinstance(n, ast.FunctionDef)}
    for f in ("destroy_model_parallel", "destroy_distributed_environment"):
        if f not in funcs:
            errors.append(f"vllm.distributed.parallel_state has no {f}()")
    methods = _literal_strings(trees["quant"], "QuantizationMethods")
    if not methods:
        errors.append("QuantizationMethods not found in vllm/model_executor/layers/quantization/__init__.py")
    for q in sorted(use["quantizations"]):
        notes.append(f"quantization={q!r}: " + ("listed" if q in methods else
                                                  "NOT listed (its cells are recorded skips at run time)"))
    return errors, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a vLLM wheel or an unpacked source tree")
    args = ap.parse_args(argv)
    src = read_sources(args.source)
    errors, notes = check(src)
    print(f"vLLM sources: {args.source.name}")
    for n in notes:
        print("  ok   " + n)
    for e in errors:
        print("  FAIL " + e)
    print("every name the engine uses exists" if not errors else f"{len(errors)} name(s) missing")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
