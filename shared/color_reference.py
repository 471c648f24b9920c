"""Which picture a new segment's colours are matched to (``worker.color``): the rule behind
``[generation] color_match``, shared by the chat and ``framechain render``.

- ``start``: the segment's own start image (the previous hand-off frame). Each segment follows
  the one before, so intended changes (night falling, a lamp switched on) carry on, and so does
  drift: what a segment gains in brightness or saturation, the next keeps and adds to.
- ``first``: the session's first picture. Drift cannot build up, but every segment is pulled
  back to the first picture's colours and brightness, so a scene meant to change is fought.
- ``off``: no matching.
- ``auto`` (the default): ``first`` under latent continuity (``svi``), whose clips are all
  conditioned on the first picture anyway; under ``frame`` continuity, ``start`` for the first
  segments of a chain, where drift is still small and a deliberate change is cheap to keep, and
  ``first`` from segment ``color_first_from`` (4) on, where drift was reported to become visible.
  The switch pulls the chain back by what it drifted in the segments before (a small step at
  that one seam, where three segments have drifted little).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

ColorMatch = Literal["auto", "first", "start", "off"]
COLOR_MATCHES: Final[tuple[ColorMatch, ...]] = ("auto", "first", "start", "off")
ColorReference = Literal["first", "start", "off"]
#: Under ``auto`` and frame continuity, the first segment (1-based) matched to the first picture.
COLOR_FIRST_FROM: Final = 4


def resolve_color_match(
    mode: ColorMatch, *, continuity: str = "frame", number: int, first_from: int = COLOR_FIRST_FROM
) -> ColorReference:
    """The reference segment ``number`` (1-based) is matched to under ``mode``."""
    if number < 1:
        raise ValueError(f"number is 1-based, got {number}")
    if mode != "auto":
        return mode
    if continuity == "svi" or number >= first_from:
        return "first"
    return "start"


def color_reference(
    mode: ColorMatch,
    *,
    number: int,
    start_image: Path | None,
    first_image: Path | None,
    continuity: str = "frame",
    first_from: int = COLOR_FIRST_FROM,
) -> Path | None:
    """The picture to match segment ``number`` to, or None for no matching."""
    chosen = resolve_color_match(mode, continuity=continuity, number=number, first_from=first_from)
    return {"start": start_image, "first": first_image, "off": None}[chosen]


def continuity_of(generation: object, settings: Mapping[str, Any]) -> str:
    """The session's continuity mode ("frame" or "svi"): its own setting, else the server's
    ``[generation] continuity``, else "frame" (where this framechain has no such setting)."""
    chosen = settings.get("continuity") or getattr(generation, "continuity", None) or "frame"
    return str(chosen)


def color_match_of(settings: Mapping[str, Any], default: ColorMatch) -> ColorMatch:
    """A session's stored ``color_match`` (/settings color=...), else ``default``."""
    for mode in COLOR_MATCHES:
        if settings.get("color_match") == mode:
            return mode
    return default
