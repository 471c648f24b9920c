"""httpcore asks for sniffio on every lock it sets up; where it is not installed, the Telegram
front end makes that failure immediate instead of a search of sys.path on every request."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from bot.telegram_adapter import build_telegram
from shared.config import Config, Secret, TelegramConfig
from tests.bot.recording_conversation import RecordingConversation


class Asked(importlib.abc.MetaPathFinder):
    """Notes every module the import system goes looking for (and finds nothing itself)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None


@pytest.mark.skipif(importlib.util.find_spec("sniffio") is not None, reason="sniffio is installed here")
def test_a_missing_sniffio_is_not_searched_for_on_every_request(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, telegram=TelegramConfig(token=Secret("123:abc"), open=True))
    build_telegram(config, RecordingConversation())
    asked = Asked()
    sys.meta_path.insert(0, asked)
    try:
        for _ in range(3):
            with pytest.raises(ImportError):
                import sniffio  # noqa: F401
    finally:
        sys.meta_path.remove(asked)
    assert "sniffio" not in asked.names
