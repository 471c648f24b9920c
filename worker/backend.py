"""The backend interface: one method that turns a start image and a prompt into frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from shared.params import ParameterError, check_frames, check_side
from worker.errors import BadInput


class StepCallback(Protocol):
    def __call__(self, step: int, total: int) -> bool:
        """Called after each denoising step (1-based). Return True to stop generation."""
        ...


class WaitCallback(Protocol):
    def __call__(self, ahead: int, where: str, eta: float | None) -> bool:
        """Called while the job waits behind ``ahead`` other jobs in the queue of what the backend
        drives (a ComfyUI server), when that number changes and between checks. Return True to stop."""
        ...


#: Makes a preview's frames, uint8 RGB (n, h, w, 3): called off the denoising loop, on the
#: preview writer's thread (worker.live_preview), so it may wait for the GPU.
PreviewFrames = Callable[[], np.ndarray]


class PreviewCallback(Protocol):
    """Live previews: the backend asks ``wants`` before each step and, when true, hands over the
    step's picture of the clean video without waiting for it to be made."""

    def wants(self, step: int, total: int) -> bool: ...

    def __call__(self, step: int, total: int, frames: PreviewFrames) -> None: ...


@dataclass(frozen=True)
class SegmentFrames:
    #: uint8 RGB, shape (frames, height, width, 3)
    frames: np.ndarray
    #: The seed actually used (drawn at random when none was given).
    seed: int
    #: The take's final latents (worker.hand_off.SavableLatents), where the backend keeps them.
    latents: Any = None
    #: How the clip continues from its predecessor: "frame" (the start image) or "svi" (latents).
    continuity: str = "frame"
    #: Why a hand-off asked for was not made (the fallback to "frame"), for the user; "" if none.
    note: str = ""


class Backend(Protocol):
    #: Short name reported in ``ready`` (``wan``, ``preview``).
    name: str
    #: True when the output is a stand-in animation, not a model's.
    preview: bool

    def generate(
        self,
        *,
        image: Image.Image,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        frames: int,
        steps: int,
        guidance: float,
        guidance_2: float,
        seed: int | None,
        on_step: StepCallback | None = None,
        on_wait: WaitCallback | None = None,
        end_image: Image.Image | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> SegmentFrames:
        """``on_preview``: live previews at the steps it wants (a backend that cannot make them
        never calls it); ``on_wait``: told while the job waits in a queue that is not ours (a ComfyUI server's);
        ``end_image``: a keyframe the last frame should become (prepared like the start image);
        a backend that cannot aim at one raises BadInput saying so."""
        ...


def check_inputs(
    *,
    image: object,
    prompt: str,
    width: int,
    height: int,
    frames: int,
    steps: int,
    guidance: float,
    guidance_2: float,
    seed: int | None,
    end_image: object = None,
) -> None:
    """Raise BadInput naming the first bad argument. Every backend calls this first."""
    if not isinstance(image, Image.Image):
        raise BadInput(f"image must be a PIL image, got {type(image).__name__}")
    if end_image is not None and not isinstance(end_image, Image.Image):
        raise BadInput(f"end_image must be a PIL image or None, got {type(end_image).__name__}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("prompt must not be empty")
    try:
        check_side("width", width)
        check_side("height", height)
        check_frames(frames)
    except ParameterError as exc:
        raise BadInput(str(exc)) from None
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 200:
        raise BadInput(f"steps must be between 1 and 200, got {steps!r}")
    for name, value in (("guidance", guidance), ("guidance_2", guidance_2)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 30.0:
            raise BadInput(f"{name} must be between 0 and 30, got {value!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise BadInput(f"seed must be an integer in [0, 2**63), got {seed!r}")
