"""Where the shipped data lives: `datasets/` and `models/` in a checkout, `recommender/_data/` in a wheel."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def data_root() -> Path:
    """The `datasets/` folder (override with RECOMMENDER_DATA_DIR)."""
    return _find("datasets", "RECOMMENDER_DATA_DIR")


@cache
def models_root() -> Path:
    """The `models/` folder holding the shipped cost-model artifact (override with RECOMMENDER_MODEL_DIR)."""
    return _find("models", "RECOMMENDER_MODEL_DIR")


def catalog_dir() -> Path:
    return data_root() / "catalog"


def _find(name: str, env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).resolve()
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"cannot find the '{name}' folder next to the package ({_PKG}); reinstall the package or set {env}"
    )
