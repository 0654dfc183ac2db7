"""notebooks/cost_model_validation.ipynb runs from the committed artifact and writes its figures."""

from __future__ import annotations

import pytest

from recommender.paths import models_root

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_validation_notebook_executes(tmp_path, monkeypatch):
    root = models_root().parent
    if not (models_root() / "cv_predictions.csv").exists():
        pytest.skip("no committed cost-model artifact")
    monkeypatch.setenv("NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(root / "notebooks" / "cost_model_validation.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    names = sorted(p.name for p in tmp_path.glob("cv_*.png"))
    assert "cv_energy_per_token_j.png" in names and "cv_logo_per_gpu.png" in names
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
