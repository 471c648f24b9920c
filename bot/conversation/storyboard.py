"""The storyboard sheet: a session's story at a glance, as one picture.

The start picture and every approved segment's hand-off frame, in order, as numbered tiles on a
grid, each with its prompt wrapped under it and, where the worker measured it, a one-line drift
note (``bot.conversation.drift``) below that. The sheet is bounded (``MAX_WIDTH`` × ``MAX_HEIGHT``)
however many segments there are: tiles shrink, and a prompt is clipped to ``MAX_LINES`` lines
ending in "…". Text goes through ``storyboard_fonts``, so any prompt is drawn or cleanly replaced
with whatever fonts the machine has. Pure Pillow, no I/O but reading the pictures: the service
runs :func:`compose` in a thread.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from bot.conversation.storyboard_fonts import Typeface, typeface

MAX_WIDTH = 2048
MAX_HEIGHT = 2048
#: A tile is never wider than this (one segment does not make a poster).
MAX_TILE = 512
MIN_TILE = 96
MAX_COLUMNS = 10
MAX_LINES = 4
GAP = 16
FONT_SIZE = 18
BADGE_FONT_SIZE = 22
BACKGROUND = "#1c1c1e"
TEXT = "#ececec"
NOTE = "#9a9aa0"
BADGE = "#ffffffd8"
BADGE_TEXT = "#111111"
START_LABEL = "Start"
START_CAPTION = "Start picture"
#: A picture's height for width is kept within these, so one odd picture cannot stretch a row.
ASPECTS = (0.5, 2.0)
JPEG_QUALITY = 88


@dataclass(frozen=True)
class Panel:
    """One picture of the story and what is written under it."""

    picture: Path
    #: The prompt that led to this frame; empty for the start picture.
    prompt: str = ""
    #: A short line under the prompt (the take's drift figures); empty for none.
    note: str = ""


@dataclass(frozen=True)
class Tile:
    """Where one panel went: its number (0 for the start picture), the thumbnail's box and the text
    lines drawn under it, as drawn."""

    number: int
    badge: str
    box: tuple[int, int, int, int]
    lines: tuple[str, ...]
    clipped: bool
    #: The note as drawn (clipped to the tile's width), "" for none.
    note: str = ""


@dataclass(frozen=True)
class Sheet:
    image: Image.Image
    tiles: tuple[Tile, ...]

    def jpeg(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return buffer.getvalue()


def wrap(text: str, face: Typeface, width: float, max_lines: int = MAX_LINES) -> tuple[tuple[str, ...], bool]:
    """``text`` (drawable by ``face``) in lines no wider than ``width``: at spaces where it can,
    anywhere in a word too long for a line (and in CJK, which has no spaces). Past ``max_lines``
    the last line ends in an ellipsis. Returns the lines and whether text was left out."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if len(lines) > max_lines:
            break  # enough to know it is clipped
        candidate = f"{line} {word}" if line else word
        if face.width(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
            line = ""
        for ch in word:  # a word longer than a line is broken where it must be
            if len(lines) > max_lines:
                break
            if line and face.width(line + ch) > width:
                lines.append(line)
                line = ""
            line += ch
    if line:
        lines.append(line)
    if len(lines) <= max_lines:
        return tuple(lines), False
    kept = lines[:max_lines]
    last = kept[-1]
    while last and face.width(last + face.ellipsis) > width:
        last = last[:-1]
    kept[-1] = last.rstrip() + face.ellipsis
    return tuple(kept), True


@dataclass(frozen=True)
class Grid:
    """A sheet's layout: the tile size and, per panel, the wrapped text lines and whether clipped."""

    columns: int
    tile: int
    thumb_height: int
    texts: tuple[tuple[tuple[str, ...], bool], ...]
    #: Per panel, its note as drawn on one line ("" for none).
    notes: tuple[str, ...]
    row_heights: tuple[int, ...]
    width: int
    height: int


def _plan(prompts: list[str], aspect: float, face: Typeface, columns: int, tile: int, notes: list[str]) -> Grid:
    thumb_height = max(1, round(tile * aspect))
    texts = tuple(wrap(p, face, tile) if p else ((START_CAPTION,), False) for p in prompts)
    drawn = tuple(wrap(n, face, tile, max_lines=1)[0][0] if n else "" for n in notes)
    lines = [len(t[0]) + (1 if n else 0) for t, n in zip(texts, drawn, strict=True)]
    rows = math.ceil(len(prompts) / columns)
    row_heights = tuple(
        thumb_height + GAP // 2 + face.line_height * max(lines[r * columns : (r + 1) * columns]) for r in range(rows)
    )
    width = columns * tile + (columns + 1) * GAP
    height = sum(row_heights) + (rows + 1) * GAP
    return Grid(columns, tile, thumb_height, texts, drawn, row_heights, width, height)


def plan_layout(prompts: list[str], aspect: float, face: Typeface, notes: list[str] | None = None) -> Grid:
    """The grid with the largest tiles that fits the bounds; ties go to the more compact sheet."""
    notes = notes if notes is not None else [""] * len(prompts)
    best: Grid | None = None
    for columns in range(1, min(len(prompts), MAX_COLUMNS) + 1):
        tile = min(MAX_TILE, (MAX_WIDTH - (columns + 1) * GAP) // columns)
        plan = _plan(prompts, aspect, face, columns, tile, notes)
        while plan.height > MAX_HEIGHT and tile > MIN_TILE:
            tile = max(MIN_TILE, int(tile * 0.92))
            plan = _plan(prompts, aspect, face, columns, tile, notes)
        if plan.height > MAX_HEIGHT:
            continue
        if best is None or (plan.tile, -plan.width * plan.height) > (best.tile, -best.width * best.height):
            best = plan
    if best is None:  # more panels than even the smallest tiles take: drawn, then scaled down
        best = _plan(prompts, aspect, face, MAX_COLUMNS, MIN_TILE, notes)
    return best


def compose(panels: list[Panel]) -> Sheet:
    """The sheet for ``panels`` in story order: the start picture (no prompt), then each approved
    segment's hand-off frame with its prompt."""
    if not panels:
        raise ValueError("panels: a storyboard needs at least one picture")
    face = typeface(FONT_SIZE)
    pictures = [_open(p.picture) for p in panels]
    reference = pictures[-1]  # the newest hand-off frame has the video's shape
    aspect = min(max(reference.height / max(1, reference.width), ASPECTS[0]), ASPECTS[1])
    # A prompt with nothing drawable still gets a mark, so it never reads as the start picture.
    prompts = [(face.drawable(p.prompt) or face.replacement or "?") if p.prompt else "" for p in panels]
    notes = [face.drawable(p.note) for p in panels]
    plan = plan_layout(prompts, aspect, face, notes)
    badge_face = typeface(min(BADGE_FONT_SIZE, max(11, plan.tile // 10)))
    sheet = Image.new("RGB", (plan.width, plan.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet, "RGBA")
    tiles: list[Tile] = []
    starts_at = 0 if panels[0].prompt else 1  # the start picture is 0; segments count from 1
    y = GAP
    for r, row_height in enumerate(plan.row_heights):
        for c in range(plan.columns):
            i = r * plan.columns + c
            if i >= len(panels):
                break
            x = GAP + c * (plan.tile + GAP)
            thumb = ImageOps.contain(pictures[i], (plan.tile, plan.thumb_height), Image.Resampling.LANCZOS)
            box = (
                x + (plan.tile - thumb.width) // 2,
                y + (plan.thumb_height - thumb.height) // 2,
            )
            sheet.paste(thumb, box)
            number = i + 1 - starts_at
            badge = START_LABEL if not panels[i].prompt else str(number)
            _badge(draw, badge_face, (box[0] + 6, box[1] + 6), badge)
            lines, clipped = plan.texts[i]
            for n, line in enumerate(lines):
                face.draw(draw, (x, y + plan.thumb_height + GAP // 2 + n * face.line_height), line, TEXT)
            note = plan.notes[i]
            if note:
                face.draw(draw, (x, y + plan.thumb_height + GAP // 2 + len(lines) * face.line_height), note, NOTE)
            box4 = (*box, box[0] + thumb.width, box[1] + thumb.height)
            tiles.append(Tile(number, badge, box4, lines, clipped, note))
        y += row_height + GAP
    if sheet.width > MAX_WIDTH or sheet.height > MAX_HEIGHT:
        scale = min(MAX_WIDTH / sheet.width, MAX_HEIGHT / sheet.height)
        size = (max(1, int(sheet.width * scale)), max(1, int(sheet.height * scale)))
        sheet = sheet.resize(size, Image.Resampling.LANCZOS)
    return Sheet(sheet, tuple(tiles))


def compose_jpeg(panels: list[Panel], out: Path) -> Path:
    """Compose the sheet and write it as a JPEG at ``out``, whole or not at all."""
    from worker.files import atomic_write_bytes  # no torch: file helpers only

    atomic_write_bytes(out, compose(panels).jpeg())
    return out


def _open(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return picture.convert("RGB")


def _badge(draw: ImageDraw.ImageDraw, face: Typeface, xy: tuple[int, int], text: str) -> None:
    x, y = xy
    pad = 5
    width = face.width(text)
    draw.rounded_rectangle((x, y, x + width + 2 * pad, y + face.line_height + pad), radius=6, fill=BADGE)
    face.draw(draw, (x + pad, y + pad // 2 + 1), text, BADGE_TEXT)
