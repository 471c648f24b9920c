"""Continuity in the pure core: the per-session setting and exact joined lengths with overlaps."""

from __future__ import annotations

import pytest

from bot import core
from bot.core_model import Limits, Segment, SegmentResult, Settings, joined_seconds
from bot.core_settings import SettingsError, apply_settings, settings_text
from shared.params import ParameterError


def segment(idx: int, frames: int, overlap: int) -> Segment:
    result = SegmentResult(video="v.mp4", last_frame="v.png", frames=frames, seed=1, overlap=overlap)
    return Segment(
        idx=idx, attempt=1, prompt="p", negative_prompt="", seed=None, start_image="s.png",
        width=32, height=32, frames=frames, steps=2, result=result,
    )  # fmt: skip


def test_continuity_is_switchable_only_where_the_svi_loras_are() -> None:
    settings = Settings()
    assert settings.continuity == "frame"
    changed = apply_settings(settings, (("continuity", "SVI"),), limits=Limits(svi=True))
    assert changed.continuity == "svi"
    assert "continuity svi" in settings_text(changed) and "continuity" not in settings_text(settings)
    assert apply_settings(changed, (("continuity", "frame"),), limits=Limits(svi=True)).continuity == "frame"
    with pytest.raises(SettingsError, match=r"needs the SVI 2\.0 Pro LoRAs"):
        apply_settings(settings, (("continuity", "svi"),), limits=Limits())
    with pytest.raises(SettingsError, match="continuity must be 'frame'"):
        apply_settings(settings, (("continuity", "latent"),), limits=Limits(svi=True))
    with pytest.raises(ParameterError):
        Settings(continuity="latent")


def test_joined_seconds_drop_each_segments_own_overlap() -> None:
    frame_chain = (segment(0, 81, 1), segment(1, 81, 1))
    assert joined_seconds(frame_chain) == pytest.approx(161 / 16)
    svi_chain = (segment(0, 81, 1), segment(1, 81, 4), segment(2, 81, 4))
    assert joined_seconds(svi_chain) == pytest.approx((81 + 77 + 77) / 16)


def test_a_job_done_carries_its_overlap_into_the_result() -> None:
    assert core.JobDone(segment=core.SegmentKey(1, 1), video="v", last_frame="p", frames=9, seed=1).overlap == 1
