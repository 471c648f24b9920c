"""`framechain render` applies the chat's start-picture policy: every case of the hostile-image
corpus gets its sentence and exit status 2 before anything is written, or is rendered upright."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.render_cli import EXIT_USAGE, add_render_arguments, cmd_render, plan_render
from shared.config import Config
from tests.bot.test_render import render
from tests.hostile_images import CASES_BY_NAME, IMAGE_CASES, ImageCase, gradient

REFUSED = [c for c in IMAGE_CASES if c.refusal is not None]
ACCEPTED = [c for c in IMAGE_CASES if c.refusal is None]


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_render_arguments(parser)
    args = parser.parse_args(argv)
    args.config = None
    return args


def picture_file(tmp_path: Path, case: ImageCase) -> Path:
    path = tmp_path / "in" / case.filename
    path.parent.mkdir()
    path.write_bytes(case.build())
    return path


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_refused_pictures_exit_2_with_their_sentence(
    tmp_path: Path, case: ImageCase, capsys: pytest.CaptureFixture[str]
) -> None:
    image = picture_file(tmp_path, case)
    out = tmp_path / "film.mp4"
    args = arguments("--image", str(image), "--prompt", "p", "--out", str(out), "--backend", "preview")
    assert cmd_render(args, Config()) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"framechain render: image {image}: ") and captured.err.count("\n") == 1
    assert case.words in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing written


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.name)
def test_accepted_pictures_are_planned_at_their_upright_size(tmp_path: Path, case: ImageCase) -> None:
    image = picture_file(tmp_path, case)
    plan = plan_render(arguments("--image", str(image), "--prompt", "p"), Config())
    assert (plan.picture.width, plan.picture.height) == case.size
    w, h = case.size or (0, 0)
    assert (plan.width > plan.height) == (w > h)  # the segment keeps the picture's orientation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_the_huge_ztxt_png_is_refused_not_a_traceback(tmp_path: Path) -> None:
    image = picture_file(tmp_path, CASES_BY_NAME["png_huge_ztxt"])
    result = render("--image", str(image), "--prompt", "p", "--out", str(tmp_path / "x.mp4"), "--backend", "preview")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "too much embedded text" in result.stderr
    assert not (tmp_path / "x").exists()


def test_an_exif_rotated_photo_renders_upright(tmp_path: Path) -> None:
    image = picture_file(tmp_path, CASES_BY_NAME["exif_rotated_jpeg"])
    out = tmp_path / "film.mp4"
    result = render(
        "--image", str(image), "--prompt", "p", "--out", str(out), "--backend", "preview",
        "--frames", "5", "--size", "32x48", "--steps", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    start = np.asarray(Image.open(tmp_path / "film" / "start.png")).astype(int)
    expected = np.asarray(gradient(120, 80).rotate(-90, expand=True)).astype(int)
    assert start.shape == (120, 80, 3) and np.abs(start - expected).mean() < 4
