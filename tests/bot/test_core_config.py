"""One rule for what the configuration asks of the chat: frames the chat cannot make are refused
by the config loader (and so by `framechain check`), and size_mode "fixed" is honoured by the
chat exactly as by `framechain render`, through shared.params.segment_size."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from PIL import Image

from bot.core import Limits, Picture, PromptText, Start, State, step
from bot.render_cli import add_render_arguments, plan_render
from bot.service import ConversationService
from shared import params
from shared.config import ConfigError, load_config
from tests.bot.test_core import OWNER, fresh


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "framechain.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("frames", [5, 17, 45, 97, 121])
def test_config_refuses_frames_the_chat_does_not_offer(tmp_path: Path, frames: int) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"[generation]\nframes = {frames}\n"), env={})
    message = str(err.value)
    assert "generation.frames" in message and f"got {frames}" in message
    assert "33 (2 s), 49 (3 s), 65 (4 s), 81 (5 s)" in message


@pytest.mark.parametrize(("frames", "seconds"), [(33, 2), (49, 3), (65, 4), (81, 5)])
def test_the_chat_uses_the_configured_frames(tmp_path: Path, frames: int, seconds: int) -> None:
    config = load_config(write(tmp_path, f"[generation]\nframes = {frames}\n"), env={})
    service = ConversationService(None, config)  # type: ignore[arg-type]  # settings need no store
    assert service.default_settings().seconds == seconds
    assert service.default_settings().frames == frames


def test_segment_size_fit_and_fixed() -> None:
    assert params.segment_size(1920, 1080, 640, 640, "fit") == params.fit_size(1920, 1080, 640 * 640) == (848, 480)
    assert params.segment_size(1920, 1080, 640, 640, "fixed") == (640, 640)
    assert params.segment_size(480, 832, 832, 480, "fixed") == (832, 480)
    with pytest.raises(params.ParameterError):
        params.segment_size(0, 10, 640, 640, "fixed")
    with pytest.raises(params.ParameterError):
        params.segment_size(10, 10, 650, 640, "fixed")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("fit", params.fit_size(1920, 1080, 832 * 480)), ("fixed", (832, 480))],
)
def test_chat_and_render_agree_on_the_size(tmp_path: Path, mode: str, expected: tuple[int, int]) -> None:
    config = load_config(
        write(tmp_path, f'[generation]\nwidth = 832\nheight = 480\nsize_mode = "{mode}"\nbackend = "preview"\n'),
        env={},
    )
    # The chat, with the limits the service builds from this config.
    limits = ConversationService(None, config).limits  # type: ignore[arg-type]  # limits need no store
    assert (limits.size, limits.size_mode) == ((832, 480), mode)
    s, _ = step(fresh(), Start(user_id=OWNER, picture=Picture("wide.png", 1920, 1080)), limits=limits)
    assert s.state is State.AWAITING_PROMPT and (s.settings.width, s.settings.height) == expected
    s, _ = step(s, PromptText(user_id=OWNER, text="go"), limits=limits)
    assert s.current is not None and (s.current.width, s.current.height) == expected
    # framechain render, from the same config and picture.
    picture = tmp_path / "wide.png"
    Image.new("RGB", (1920, 1080)).save(picture)
    parser = argparse.ArgumentParser()
    add_render_arguments(parser)
    plan = plan_render(parser.parse_args(["--image", str(picture), "--prompt", "go"]), config)
    assert (plan.width, plan.height) == expected


def test_limits_check_the_size_mode() -> None:
    with pytest.raises(ValueError, match="size_mode"):
        Limits(size_mode="stretch")  # type: ignore[arg-type]
    assert Limits(size=(832, 480)).pixel_budget == 832 * 480
