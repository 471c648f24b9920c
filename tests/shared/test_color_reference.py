"""The colour-match rule: which picture a segment is matched to."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.color_reference import color_match_of, color_reference, continuity_of, resolve_color_match
from shared.config import GenerationConfig


def test_auto_follows_the_start_image_early_and_the_first_picture_later() -> None:
    assert [resolve_color_match("auto", number=n) for n in range(1, 7)] == ["start"] * 3 + ["first"] * 3
    assert [resolve_color_match("auto", number=n, first_from=2) for n in (1, 2)] == ["start", "first"]


def test_auto_under_latent_continuity_is_the_first_picture_from_the_start() -> None:
    assert {resolve_color_match("auto", continuity="svi", number=n) for n in range(1, 5)} == {"first"}


def test_an_explicit_mode_is_kept_everywhere() -> None:
    for mode in ("first", "start", "off"):
        assert {resolve_color_match(mode, continuity=c, number=n) for c in ("frame", "svi") for n in (1, 9)} == {mode}
    with pytest.raises(ValueError, match="1-based"):
        resolve_color_match("auto", number=0)


def test_the_reference_picture() -> None:
    start, first = Path("seg3.png"), Path("first.png")
    pick = {"start_image": start, "first_image": first}
    assert color_reference("auto", number=2, **pick) == start
    assert color_reference("auto", number=4, **pick) == first
    assert color_reference("off", number=4, **pick) is None
    assert color_reference("auto", number=1, continuity="svi", **pick) == first


def test_continuity_comes_from_the_session_then_the_server() -> None:
    assert continuity_of(GenerationConfig(), {}) == "frame"
    assert continuity_of(GenerationConfig(), {"continuity": "svi"}) == "svi"
    assert GenerationConfig().color_match == "auto"


def test_a_sessions_stored_colour_match_wins_over_the_servers() -> None:
    assert color_match_of({"color_match": "off"}, "auto") == "off"
    assert color_match_of({}, "start") == "start"
    assert color_match_of({"color_match": "sepia"}, "first") == "first"  # not one of ours: the server's
