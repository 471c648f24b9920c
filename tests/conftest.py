"""Fixtures shared by the worker and bot tests: a tiny Wan2.2 I2V model folder, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Wan2.2 I2V diffusers folder (see tests/tiny_wan.py).

    Imported lazily: torch and diffusers load only in runs that ask for the model.
    """
    from tests.tiny_wan import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("tiny-wan") / "model")
