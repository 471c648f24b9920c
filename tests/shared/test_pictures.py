"""The start-picture policy (shared.pictures) on the hostile-image corpus, and the worker's last line
of defence built on it."""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from shared.config import LimitsConfig
from shared.pictures import (
    STORED_PIXELS,
    Accepted,
    PictureRefused,
    Refused,
    check_picture,
    picture_problem,
    read_picture,
)
from shared.protocol import Failed, FailureKind, Generate
from tests.hostile_images import CASES_BY_NAME, IMAGE_CASES, ImageCase, encode, gradient, png
from worker.errors import BadInput
from worker.preview import PreviewBackend
from worker.process import ProtocolOut, Worker, load_start_image


def pixels(result: Accepted | Refused) -> np.ndarray:
    assert isinstance(result, Accepted), result
    with Image.open(io.BytesIO(result.png)) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (result.width, result.height)
        assert "exif" not in image.info
        return np.asarray(image).astype(int)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_each_case_gets_its_answer(case: ImageCase) -> None:
    result = check_picture(case.build())
    if case.refusal is None:
        assert isinstance(result, Accepted), result
        assert (result.width, result.height) == case.size
        pixels(result)
    else:
        assert isinstance(result, Refused) and result.code == case.refusal, result
        assert case.words in result.reason and result.reason.endswith(".")
        assert "\n" not in result.reason and "Error" not in result.reason


def test_exif_orientation_is_applied() -> None:
    rgb = pixels(check_picture(CASES_BY_NAME["exif_rotated_jpeg"].build()))
    # Stored 120 wide with red growing rightwards; turned 90° clockwise, red grows downwards
    # and green (which grew downwards) now grows leftwards.
    assert rgb.shape == (120, 80, 3)
    assert rgb[-1, 40, 0] - rgb[0, 40, 0] > 200
    assert rgb[60, 0, 1] - rgb[60, -1, 1] > 200


def test_transparency_is_flattened_onto_white() -> None:
    for name in ("palette_transparent_png", "la_png", "rgba_png"):
        rgb = pixels(check_picture(CASES_BY_NAME[name].build()))
        assert (rgb[:, :40] == 255).all(), name  # the transparent left half
        assert (rgb[:, 60:] < 250).any(), name
    red = pixels(check_picture(CASES_BY_NAME["palette_transparent_png"].build()))[:, 60:]
    assert (red == [200, 30, 30]).all()


def test_16_bit_levels_are_scaled_not_clipped() -> None:
    rgb = pixels(check_picture(CASES_BY_NAME["gray_16bit_png"].build()))
    row = rgb[10, :, 0]
    assert row[0] == 0 and row[-1] == 255 and 100 < row[48] < 160  # mid-grey stays mid-grey
    assert (np.diff(row) >= 0).all() and (rgb[..., 0] == rgb[..., 2]).all()


def test_cmyk_comes_out_as_its_rgb() -> None:
    rgb = pixels(check_picture(CASES_BY_NAME["cmyk_jpeg"].build()))
    assert np.abs(rgb - np.asarray(gradient()).astype(int)).mean() < 8


def test_a_big_picture_is_stored_smaller_with_its_shape() -> None:
    result = check_picture(encode(gradient(3000, 1500), "JPEG"))
    assert isinstance(result, Accepted) and result.source_format == "JPEG"
    assert result.width * result.height <= STORED_PIXELS
    assert math.isclose(result.width / result.height, 2.0, rel_tol=0.01)


def test_the_limits_come_from_the_config() -> None:
    wide, texty = png(500, 100), CASES_BY_NAME["png_many_text_chunks"].build()
    loose = LimitsConfig(image_min_side=16, image_max_aspect=8.0, image_text_bytes=4 * 1024 * 1024)
    assert isinstance(check_picture(png(32, 32), loose), Accepted)
    assert isinstance(check_picture(wide, loose), Accepted)
    assert isinstance(check_picture(texty, loose), Accepted)
    small = LimitsConfig(image_pixels=90 * 90)
    assert check_picture(png(), small) == Refused(
        "That picture is 96×96; the limit is 0.0081 megapixels. Please send a smaller one.", "pixels"
    )
    assert check_picture(png(), LimitsConfig(image_bytes=100)) == Refused(
        "That file is 0.0 MB; the limit is 0 KB. Please send a smaller picture.", "bytes"
    )


def test_picture_problem_is_the_refusal_sentence() -> None:
    for case in IMAGE_CASES[:20]:
        result = check_picture(case.build())
        assert picture_problem(case.build()) == (result.reason if isinstance(result, Refused) else None)


def test_the_worker_rules_skip_size_and_shape_but_not_safety() -> None:
    # Hand-off frames may be any segment size (framechain render --size 32x32): no shape rules.
    assert read_picture(png(32, 32)).size == (32, 32)
    assert read_picture(png(1280, 16)).mode == "RGB"
    upright = read_picture(CASES_BY_NAME["exif_rotated_jpeg"].build())
    assert upright.size == (80, 120) and upright.mode == "RGB"
    for name in ("zero_bytes", "animated_gif", "truncated_png", "png_100_megapixels", "png_huge_ztxt", "svg"):
        with pytest.raises(PictureRefused) as refused:
            read_picture(CASES_BY_NAME[name].build())
        assert refused.value.code == CASES_BY_NAME[name].refusal


@pytest.mark.parametrize("name", ["truncated_png", "animated_webp", "png_huge_ztxt", "html_named_png"])
def test_a_bad_file_reaching_the_worker_fails_as_bad_input(tmp_path: Path, name: str) -> None:
    path = tmp_path / "picture-1.png"
    path.write_bytes(CASES_BY_NAME[name].build())
    with pytest.raises(BadInput) as bad:
        load_start_image(str(path))
    expected = check_picture(path.read_bytes())
    assert isinstance(expected, Refused) and str(bad.value) == expected.reason
    worker = Worker(PreviewBackend(), ProtocolOut(io.StringIO()), device="cpu", limits=LimitsConfig())
    job = Generate(
        job_id="j", image=str(path), prompt="p", width=32, height=32, frames=5, steps=1, out_dir=str(tmp_path / "out")
    )
    failed = worker.run_job(job, threading.Event())
    assert failed == Failed(job_id="j", kind=FailureKind.BAD_INPUT, message=expected.reason)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF decoder")
def test_avif_is_read_where_pillow_has_a_decoder() -> None:
    result = check_picture(encode(gradient(), "AVIF"))
    assert isinstance(result, Accepted) and result.source_format == "AVIF"
