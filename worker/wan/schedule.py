"""Samplers that reproduce the reference ComfyUI schedule, and which expert runs each step.

ComfyUI's "simple" schedule over a flow model with shift ``s`` picks every (1000/N)-th entry,
from the top, of the model's 1000 shifted sigmas: the unshifted times are ``1 - k/N`` for
k = 0..N-1 (exactly, when N divides 1000), shifted as ``sigma = s*t / (1 + (s-1)*t)``, and the model
sees ``timestep = 1000 * sigma``. diffusers' default Euler spacing ends at 1/1000 instead of 1/N,
so its steps land slightly elsewhere; the subclass below starts from ComfyUI's times instead.
The pipeline sends a step to the high-noise expert when ``timestep >= boundary_ratio * 1000``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from worker.wan.options import Sampler

Expert = Literal["high", "low"]
NUM_TRAIN_TIMESTEPS = 1000


def simple_times(steps: int) -> list[float]:
    """ComfyUI "simple" unshifted times, 1 - k/N for k = 0..N-1, with ComfyUI's rounding down to
    its 1000-entry table (which only matters when N does not divide 1000)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    stride = NUM_TRAIN_TIMESTEPS / steps
    return [(NUM_TRAIN_TIMESTEPS - int(k * stride)) / NUM_TRAIN_TIMESTEPS for k in range(steps)]


class SimpleFlowMatchEulerScheduler(FlowMatchEulerDiscreteScheduler):  # type: ignore[misc]  # untyped base
    """Flow-matching Euler whose default times are ComfyUI's "simple" ``1 - k/N``.

    Only the spacing differs from the parent; the shift, the Euler step and the terminal 0 are the
    parent's, which are ComfyUI's as well.
    """

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        if sigmas is None and timesteps is None and num_inference_steps is not None:
            sigmas = simple_times(num_inference_steps)
        super().set_timesteps(  # type: ignore[misc]
            num_inference_steps, device=device, sigmas=sigmas, mu=mu, timesteps=timesteps
        )


def make_scheduler(sampler: Sampler, shift: float) -> Any:
    """A fresh scheduler for ``sampler`` with the given shift (both experts share it)."""
    if sampler == "euler":
        return SimpleFlowMatchEulerScheduler(  # type: ignore[no-untyped-call]
            num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift
        )
    if sampler == "unipc":
        return UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            num_train_timesteps=NUM_TRAIN_TIMESTEPS,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
        )
    raise ValueError(f"sampler must be 'euler' or 'unipc', got {sampler!r}")


def schedule(sampler: Sampler, steps: int, shift: float) -> tuple[list[float], list[float]]:
    """(timesteps, sigmas) the sampler walks for ``steps`` steps; sigmas end with the terminal 0."""
    scheduler: Any = make_scheduler(sampler, shift)
    scheduler.set_timesteps(steps, device="cpu")
    timesteps = [float(t) for t in np.asarray(scheduler.timesteps, dtype=np.float64)]
    sigmas = [float(s) for s in np.asarray(scheduler.sigmas, dtype=np.float64)]
    return timesteps, sigmas


def experts_for(timesteps: Sequence[float], boundary_ratio: float) -> list[Expert]:
    """Which expert the pipeline runs at each timestep (its rule: t >= boundary -> high noise)."""
    boundary = boundary_ratio * NUM_TRAIN_TIMESTEPS
    return ["high" if t >= boundary else "low" for t in timesteps]


def expert_split(sampler: Sampler, steps: int, shift: float, boundary_ratio: float) -> tuple[int, int]:
    """(high-noise steps, low-noise steps) for a generation; the reference gives (10, 10)."""
    experts = experts_for(schedule(sampler, steps, shift)[0], boundary_ratio)
    return experts.count("high"), experts.count("low")
