"""Latent hand-off between takes (``continuity = "svi"``), as the worker process sees it: no torch.

A job in ``svi`` continuity names the approved predecessor's latent file and the session's first
picture (the anchor). A backend that can continue from latents says so with
``latent_hand_off = True`` and takes a ``hand_off`` argument; any other backend, and latents that
do not fit, fall back to ``frame`` continuity (the start image), with a note saying why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from worker.backend import Backend, PreviewCallback, SegmentFrames, StepCallback, WaitCallback

FRAME = "frame"
SVI = "svi"


@dataclass(frozen=True)
class LatentHandOff:
    #: The session's first picture: VAE-encoded once, it is every clip's anchor latent.
    anchor: Image.Image
    #: The approved previous take's latent file (worker.wan.latents).
    previous: Path
    #: How many of its last latent frames condition the clip.
    motion_latents: int = 1


class SavableLatents(Protocol):
    """A take's final latents, as a backend returns them in SegmentFrames."""

    def save(self, path: str | os.PathLike[str]) -> Path: ...


class HandOffBackend(Backend, Protocol):
    latent_hand_off: bool

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
        hand_off: LatentHandOff | None = None,
    ) -> SegmentFrames: ...
