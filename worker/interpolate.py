"""2x frame interpolation of a take for smooth playback, with RIFE 4.26 (framelift-video's
network, MIT, from Practical-RIFE) on the worker's device.

The weights come from a file the operator gives (``generation.rife_weights``, the flownet
``.pkl`` of Practical-RIFE 4.26); nothing is ever downloaded (framelift's ``ensure_rife_weights``
is never called). A take of F frames gives 2F-1: each original, and the moment halfway between it
and the next; nothing is drawn past the take's ends, so takes interpolate independently.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from shared.smooth_playback import x2_frames

log = logging.getLogger("framechain.worker")


class InterpolationError(RuntimeError):
    """The RIFE weights cannot be used; the message says which file and why."""


class TakeInterpolator:
    """Doubles a take's frame rate. The network is loaded on first use, once per frame size
    (sessions keep one size, so in practice once)."""

    def __init__(self, weights: str | Path, device: str = "cpu") -> None:
        self.weights = Path(weights).expanduser()
        if not self.weights.is_file():
            raise InterpolationError(f"generation.rife_weights: {self.weights} is not a file")
        if importlib.util.find_spec("framelift") is None:
            raise InterpolationError(
                "generation.final_fps = 32 needs framelift-video (RIFE): run `pip install -e '.[gpu]'`"
            )
        self.device = device
        self._size: tuple[int, int] | None = None
        self._network: Any = None

    def _interpolator(self, width: int, height: int) -> Any:
        if self._size != (width, height):
            from framelift.device import Device
            from framelift.interpolation import FrameInterpolator

            kind, _, number = self.device.partition(":")
            cuda = kind == "cuda"
            device = Device(kind="cuda", name=self.device, gpu_id=int(number or 0)) if cuda else Device("cpu", "CPU")
            try:
                self._network = FrameInterpolator(self.weights, device, width, height, half=cuda)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise InterpolationError(f"generation.rife_weights: cannot load {self.weights.name}: {exc}") from exc
            self._size = (width, height)
        return self._network

    def double(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` (uint8 RGB, (F, H, W, 3)) with one interpolated frame between each pair:
        (2F-1, H, W, 3); the originals stay bit for bit at the even indices."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
            raise ValueError(f"frames must be uint8 of shape (frames, height, width, 3), got {frames.shape}")
        count, height, width = frames.shape[:3]
        out = np.empty((x2_frames(count), height, width, 3), np.uint8)
        out[0::2] = frames
        if count < 2:
            return out
        network = self._interpolator(width, height)
        # framelift's network takes BGR frames, as OpenCV reads them.
        prepared = network.prepare(frames[0, :, :, ::-1])
        for index in range(1, count):
            following = network.prepare(frames[index, :, :, ::-1])
            out[2 * index - 1] = network.between(prepared, following, 0.5)[:, :, ::-1]
            prepared = following
        return out
