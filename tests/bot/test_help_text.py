"""/help (and /end's how-to) is the same on every platform: it names no one platform's gesture;
/help names the takes."""

from __future__ import annotations

from bot.conversation.service import HELP
from bot.core_keyframes import HOW


def test_help_fits_every_platform_and_names_the_takes() -> None:
    assert "caption" not in HELP  # Telegram's word: the web chat and Discord have none
    assert "/end with a picture (sent with it, or as a reply to one)" in HELP
    assert "takes=2: two takes of every prompt to choose from" in HELP


def test_how_to_set_an_end_keyframe_fits_every_platform() -> None:
    assert "caption" not in HOW
    assert HOW.startswith("Send /end with a picture (sent with it, or as a reply to one)")
