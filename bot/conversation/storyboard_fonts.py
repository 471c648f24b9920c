"""Fonts for the storyboard sheet: whatever the machine has, and never a dependency on any.

A prompt may hold any script and emoji. The sheet draws each character with the first font of a
chain that has a glyph for it (a Latin font, then a CJK font, then a symbol font, then Pillow's
own), and replaces a character none of them has with one clean mark, so a prompt never shows a
row of empty boxes ("tofu") and never makes composing fail. Pillow has no "has this glyph" call:
a glyph that renders exactly like a character no font has (the ``.notdef`` box) is missing.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import ImageDraw, ImageFont

log = logging.getLogger("framechain.storyboard")

#: Where fonts live on Linux (Debian's fonts-* packages), macOS and Windows.
FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
    Path.home() / ".fonts",
    Path("/System/Library/Fonts"),
    Path("/Library/Fonts"),
    Path("C:/Windows/Fonts"),
)
#: File names in order of preference, per role in the chain: Latin and most scripts, CJK, symbols.
LATIN = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf")
CJK = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansCJKjp-Regular.otf",
    "SourceHanSans-Regular.ttc",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "DroidSansFallbackFull.ttf",
    "DroidSansFallback.ttf",
    "PingFang.ttc",
    "msyh.ttc",
)
SYMBOLS = ("NotoEmoji-Regular.ttf", "Symbola.ttf", "NotoSansSymbols2-Regular.ttf", "seguisym.ttf")
#: A character no font has (the last code point of plane 16, private use): it renders as .notdef.
_NO_SUCH_CHARACTER = "\U0010fffd"
#: What stands for a run of characters no font of the chain can draw.
REPLACEMENTS = ("□", "?")


@functools.cache
def _installed() -> dict[str, Path]:
    """Every font file under the font folders, by file name (the first found wins)."""
    found: dict[str, Path] = {}
    for folder in FONT_DIRS:
        try:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in (".ttf", ".otf", ".ttc"):
                    found.setdefault(path.name, path)
        except OSError:
            continue
    return found


def find_font(names: Iterable[str]) -> Path | None:
    """The first of ``names`` installed on this machine."""
    installed = _installed()
    return next((installed[n] for n in names if n in installed), None)


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont | ImageFont.TransposedFont


def _load(path: Path, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as exc:  # a bitmap-only colour emoji font refuses other sizes; a broken file
        log.debug("storyboard: font %s not usable at %d px: %s", path, size, exc)
        return None


def _mask(font: Font, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)


def has_glyph(font: Font, ch: str) -> bool:
    """Whether ``font`` draws ``ch`` as itself rather than as its missing-glyph box."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        return ch.isascii() and ch.isprintable()  # Pillow's bitmap font: Latin-1 at best
    try:
        return _mask(font, ch) != _mask(font, _NO_SUCH_CHARACTER)
    except (OSError, ValueError):
        return False


class Typeface:
    """A chain of fonts at one size that measures and draws text run by run."""

    def __init__(self, fonts: list[Font]) -> None:
        if not fonts:
            raise ValueError("a typeface needs at least one font")
        self.fonts = fonts
        self._font_of: dict[str, Font | None] = {}
        self._widths: dict[str, float] = {}
        ascent, descent = _metrics(fonts[0])
        self.line_height = int((ascent + descent) * 1.25) + 1
        self.ellipsis = "…" if self.font_for("…") is not None else "..."
        self.replacement = next((r for r in REPLACEMENTS if self.font_for(r) is not None), "")

    def font_for(self, ch: str) -> Font | None:
        if ch not in self._font_of:
            self._font_of[ch] = next((f for f in self.fonts if has_glyph(f, ch)), None)
        return self._font_of[ch]

    def drawable(self, text: str) -> str:
        """``text`` as this typeface can draw it: spaces made plain, invisible characters (joiners,
        emoji variation selectors) dropped, and each run of characters no font has replaced by one
        mark."""
        out: list[str] = []
        for ch in unicodedata.normalize("NFC", text):
            if ch.isspace() or unicodedata.category(ch) == "Zs":
                if out and out[-1] != " ":
                    out.append(" ")
                continue
            if _invisible(ch):
                continue
            if self.font_for(ch) is None:
                if out and out[-1] == self.replacement:
                    continue
                ch = self.replacement
            out.append(ch)
        return "".join(out).strip()

    def _runs(self, text: str) -> Iterator[tuple[Font, str]]:
        """``text`` (already drawable) in runs of one font each."""
        run, run_font = "", self.fonts[0]
        for ch in text:
            font = self.fonts[0] if ch == " " else (self.font_for(ch) or self.fonts[0])
            if font is not run_font and run:
                yield run_font, run
                run = ""
            run_font = font if run == "" else run_font
            run += ch
        if run:
            yield run_font, run

    def width(self, text: str) -> float:
        if text not in self._widths:  # wrapping measures the same words at many tile sizes
            self._widths[text] = sum(font.getlength(run) for font, run in self._runs(text))
        return self._widths[text]

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: str) -> None:
        x, y = xy
        for font, run in self._runs(text):
            draw.text((x, y), run, font=font, fill=fill)
            x += font.getlength(run)


def _metrics(font: Font) -> tuple[int, int]:
    if isinstance(font, ImageFont.FreeTypeFont):
        return font.getmetrics()
    bottom = font.getbbox("Ag")[3]
    return int(bottom), 0


def _invisible(ch: str) -> bool:
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn", "Cs")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors (emoji presentation)
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers: nothing without their emoji
    )


@functools.cache
def typeface(size: int) -> Typeface:
    """The best chain this machine allows at ``size`` pixels; Pillow's built-in font always ends
    it, so the sheet never needs a font to be installed."""
    fonts: list[Font] = []
    for names in (LATIN, CJK, SYMBOLS):
        path = find_font(names)
        font = _load(path, size) if path is not None else None
        if font is not None:
            fonts.append(font)
    fonts.append(ImageFont.load_default(size=size))
    return Typeface(fonts)
