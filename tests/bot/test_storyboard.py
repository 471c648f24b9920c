"""The storyboard sheet's layout: bounded for 1, 5, 24 and the most segments a session may have,
every prompt present (read from the text lines the sheet drew), long prompts wrapped and clipped,
and any script drawn with a font that has it or replaced cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from bot.conversation import storyboard
from bot.conversation.storyboard import MAX_HEIGHT, MAX_LINES, MAX_WIDTH, Panel, compose, wrap
from bot.conversation.storyboard_fonts import CJK, Typeface, find_font, has_glyph, typeface
from shared.config import LimitsConfig

CJK_PROMPT = "夕暮れの灯台 灯塔在黄昏中 🎬✨ the camera pushes in 👩‍👩‍👧"


def frames(tmp_path: Path, count: int, size: tuple[int, int] = (160, 90)) -> list[Path]:
    paths = []
    for i in range(count):
        rgb = np.zeros((size[1], size[0], 3), np.uint8)
        rgb[..., 0] = 40 + (i * 37) % 200
        rgb[..., 1] = np.linspace(0, 255, size[0], dtype=np.uint8)
        path = tmp_path / f"frame-{i}.png"
        Image.fromarray(rgb).save(path)
        paths.append(path)
    return paths


def story(tmp_path: Path, segments: int, prompt: str = "segment {n}: the camera drifts over the bay") -> list[Panel]:
    start, *handoffs = frames(tmp_path, segments + 1)
    return [Panel(start)] + [Panel(p, prompt.format(n=n)) for n, p in enumerate(handoffs, 1)]


def text_of(tile: storyboard.Tile) -> str:
    return " ".join(tile.lines)


@pytest.mark.parametrize("segments", [1, 5, 24, LimitsConfig().segments_per_session])
def test_the_sheet_is_bounded_and_shows_every_picture_and_prompt(tmp_path: Path, segments: int) -> None:
    panels = story(tmp_path, segments)
    sheet = compose(panels)

    assert sheet.image.width <= MAX_WIDTH and sheet.image.height <= MAX_HEIGHT
    assert [t.number for t in sheet.tiles] == list(range(segments + 1))
    assert [t.badge for t in sheet.tiles] == ["Start", *map(str, range(1, segments + 1))]
    for panel, tile in zip(panels[1:], sheet.tiles[1:], strict=True):
        assert text_of(tile) == panel.prompt and not tile.clipped
    # Tiles do not overlap and lie on the sheet.
    boxes = [t.box for t in sheet.tiles]
    for i, (left, top, right, bottom) in enumerate(boxes):
        assert 0 <= left < right <= sheet.image.width and 0 <= top < bottom <= sheet.image.height
        for other in boxes[i + 1 :]:
            assert right <= other[0] or other[2] <= left or bottom <= other[1] or other[3] <= top
    # The pictures are on it: each tile's centre has its frame's colour.
    for i, tile in enumerate(sheet.tiles):
        centre = ((tile.box[0] + tile.box[2]) // 2, (tile.box[1] + tile.box[3]) // 2)
        assert abs(sheet.image.getpixel(centre)[0] - (40 + (i * 37) % 200)) <= 12  # type: ignore[index]
    assert len(sheet.jpeg()) < 10 * 1024 * 1024  # Telegram's photo limit


def test_one_segment_is_not_blown_up_into_a_poster(tmp_path: Path) -> None:
    sheet = compose(story(tmp_path, 1))
    assert sheet.image.width <= 2 * storyboard.MAX_TILE + 3 * storyboard.GAP
    assert all(t.box[2] - t.box[0] <= storyboard.MAX_TILE for t in sheet.tiles)


def test_a_long_prompt_is_wrapped_within_its_tile_and_clipped_with_an_ellipsis(tmp_path: Path) -> None:
    words = " ".join(f"word{n}" for n in range(400))
    panels = story(tmp_path, 5, prompt="{n} " + words)
    panels[2] = Panel(panels[2].picture, "short one")
    panels[3] = Panel(panels[3].picture, "x" * 500)  # one word longer than a line
    sheet = compose(panels)
    face = typeface(storyboard.FONT_SIZE)
    long_tile = sheet.tiles[1]
    width = long_tile.box[2] - long_tile.box[0]
    assert len(long_tile.lines) == MAX_LINES and long_tile.clipped
    assert long_tile.lines[-1].endswith(face.ellipsis)
    assert all(face.width(line) <= width + 1 for line in long_tile.lines)
    assert text_of(long_tile).startswith("1 word0 word1 word2")
    assert sheet.tiles[2].lines == ("short one",) and not sheet.tiles[2].clipped
    assert len(sheet.tiles[3].lines) == MAX_LINES and all(set(line) <= {"x", "…", "."} for line in sheet.tiles[3].lines)


def test_wrap_keeps_every_word_when_it_fits() -> None:
    face = typeface(18)
    lines, clipped = wrap("a b c d e f g h i j", face, face.width("a b c d") + 1)
    assert lines == ("a b c d", "e f g h", "i j") and not clipped


def test_cjk_and_emoji_never_fail_and_what_cannot_be_drawn_is_replaced_cleanly(tmp_path: Path) -> None:
    panels = story(tmp_path, 3, prompt=CJK_PROMPT + " {n}")
    panels[2] = Panel(panels[2].picture, "\u200d\ufe0f")  # nothing visible at all
    sheet = compose(panels)
    face = typeface(storyboard.FONT_SIZE)
    text = text_of(sheet.tiles[1])
    assert "the camera pushes in" in text
    for ch in text.replace(" ", ""):
        assert face.font_for(ch) is not None, f"{ch!r} would be drawn as a missing-glyph box"
    assert "\u200d" not in text and "\ufe0f" not in text
    assert face.replacement * 2 not in text  # a run of missing characters is one mark
    assert sheet.tiles[2].lines and sheet.tiles[2].lines[0].strip()  # a mark, not an empty caption


def test_a_cjk_prompt_is_drawn_in_a_cjk_font_where_the_machine_has_one() -> None:
    if find_font(CJK) is None:
        pytest.skip("no CJK font installed here (fonts-noto-cjk)")
    face = typeface(storyboard.FONT_SIZE)
    assert face.drawable("夕暮れの灯台 灯塔") == "夕暮れの灯台 灯塔"
    assert all(face.font_for(ch) is not None for ch in "夕暮れの灯台灯塔")


def test_a_script_the_latin_font_has_is_drawn_not_replaced() -> None:
    face = typeface(storyboard.FONT_SIZE)
    if not has_glyph(face.fonts[0], "ж"):
        pytest.skip("no font with Cyrillic here")
    assert face.drawable("Привет — café") == "Привет — café"


def test_without_any_installed_font_pillows_own_is_used() -> None:
    face = Typeface([ImageFont.load_default(size=18)])
    text = face.drawable(CJK_PROMPT)
    assert "the camera pushes in" in text and "夕" not in text
    assert face.line_height > 10
    image = Image.new("RGB", (600, 40))
    from PIL import ImageDraw

    face.draw(ImageDraw.Draw(image), (0, 0), text, "#ffffff")
    assert image.getbbox() is not None


def test_the_missing_glyph_test_tells_a_glyph_from_the_box() -> None:
    font = ImageFont.load_default(size=18)
    assert has_glyph(font, "A")
    assert not has_glyph(font, "夕")


def test_no_pictures_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="panels"):
        compose([])
