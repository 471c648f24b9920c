"""Fixtures shared by the worker and bot tests: a tiny Wan2.2 I2V model folder, written once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach a model hub: the Hugging Face libraries (here and in the worker processes the
# tests start, which inherit the environment) fail fast instead of trying the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Wan2.2 I2V diffusers folder (see tests/tiny_wan.py).

    Imported lazily: torch and diffusers load only in runs that ask for the model.
    """
    from tests.tiny_wan import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("tiny-wan") / "model")
