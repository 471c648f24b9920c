"""The samplers against the reference numbers: ComfyUI euler/"simple", shift 8, 20 steps, with the
high-noise expert on steps 0-9 and the low-noise expert on steps 10-19 at boundary_ratio 0.9."""

from __future__ import annotations

import pytest

from worker.wan.schedule import expert_split, experts_for, schedule, simple_times


def comfy_shift(shift: float, t: float) -> float:
    return shift * t / (1 + (shift - 1) * t)


def comfy_simple_sigmas(steps: int, shift: float) -> list[float]:
    """ComfyUI's simple_scheduler over ModelSamplingDiscreteFlow, written out independently: the
    model's table holds the shifted sigma of t = i/1000 for i = 1..1000, and the scheduler walks
    it from the top in strides of 1000/steps, then appends 0."""
    table = [comfy_shift(shift, i / 1000) for i in range(1, 1001)]
    stride = len(table) / steps
    return [table[-(1 + int(x * stride))] for x in range(steps)] + [0.0]


def test_reference_euler_sigmas_follow_the_comfyui_formula() -> None:
    timesteps, sigmas = schedule("euler", 20, 8.0)
    expected = [8.0 * s / (1 + 7.0 * s) for s in (1 - k / 20 for k in range(20))] + [0.0]
    assert sigmas == pytest.approx(expected, abs=1e-6)
    assert timesteps == pytest.approx([1000 * s for s in expected[:-1]], abs=1e-3)


@pytest.mark.parametrize("steps", [4, 20, 30, 7])
def test_euler_sigmas_match_comfyui_simple_scheduler(steps: int) -> None:
    _, sigmas = schedule("euler", steps, 8.0)
    assert sigmas == pytest.approx(comfy_simple_sigmas(steps, 8.0), abs=1e-6)


def test_simple_times_are_one_minus_k_over_n_when_n_divides_1000() -> None:
    assert simple_times(20) == pytest.approx([1 - k / 20 for k in range(20)])
    assert simple_times(4) == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError, match="steps"):
        simple_times(0)


def test_reference_expert_split_is_steps_0_to_9_high_and_10_to_19_low() -> None:
    timesteps, _ = schedule("euler", 20, 8.0)
    assert experts_for(timesteps, 0.9) == ["high"] * 10 + ["low"] * 10
    # the switch falls between sigma(0.55) = 0.907 and sigma(0.5) = 0.889, around the 900 boundary
    assert timesteps[9] > 900 > timesteps[10]


def test_unipc_matches_the_reference_closely_with_the_same_split() -> None:
    timesteps, sigmas = schedule("unipc", 20, 8.0)
    reference = comfy_simple_sigmas(20, 8.0)
    assert len(timesteps) == 20
    assert sigmas == pytest.approx(reference, abs=1e-2)
    assert expert_split("unipc", 20, 8.0, 0.9) == (10, 10)


@pytest.mark.parametrize(
    ("sampler", "steps", "split"),
    [("euler", 20, (10, 10)), ("euler", 4, (2, 2)), ("euler", 40, (19, 21)), ("unipc", 4, (2, 2))],
)
def test_expert_split_counts(sampler: str, steps: int, split: tuple[int, int]) -> None:
    assert expert_split(sampler, steps, 8.0, 0.9) == split  # type: ignore[arg-type]


def test_boundary_ratio_moves_the_split() -> None:
    assert expert_split("euler", 20, 8.0, 1.0) == (1, 19)  # only t = 1000 reaches a 1000 boundary
    assert expert_split("euler", 20, 8.0, 0.0) == (20, 0)
