"""The documentation's links and pictures: every relative link in docs/ and the README leads to a
file that exists (an anchor to a heading that exists), and the pictures are real PNGs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_lead_somewhere(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: no heading #{anchor} in {file.name}"


def test_the_pages_exist_and_the_readme_points_to_them() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("user-guide.md", "operator-guide.md", "architecture.md", "configuration.md"):
        assert (ROOT / "docs" / name).is_file()
        assert f"docs/{name}" in readme


@pytest.mark.parametrize("name", ["storyboard.png", "segment-message.png"])
def test_the_pictures_are_real_pngs(name: str) -> None:
    with Image.open(ROOT / "docs" / "images" / name) as picture:
        assert picture.format == "PNG"
        assert picture.width >= 200 and picture.height >= 200
