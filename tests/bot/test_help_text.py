"""/help is the same on every platform: it names no one platform's gesture, and the takes."""

from __future__ import annotations

from bot.conversation.service import HELP


def test_help_fits_every_platform_and_names_the_takes() -> None:
    assert "caption" not in HELP  # Telegram's word: the web chat and Discord have none
    assert "/end with a picture (sent with it, or as a reply to one)" in HELP
    assert "takes=2: two takes of every prompt to choose from" in HELP
