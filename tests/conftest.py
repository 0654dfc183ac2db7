"""Shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # plain `pytest` (no install, rootdir-relative imports of tests.fixtures)
    sys.path.insert(0, str(_ROOT))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny random llama + local tokenizer (built once per session, CPU, offline)."""
    from tests.fixtures.tiny_model import build_tiny_model

    _, _, path = build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    return path
