"""What a denoising step predicts the clean video to be, as a few small RGB frames, without the VAE.

Flow matching: the model predicts a velocity ``v`` with ``x_t = (1 - sigma) * x0 + sigma * noise``,
so ``x0 = x_t - sigma_t * v``. The step callback sees only the latents after the scheduler's step;
for the Euler sampler ``v`` is the slope between two consecutive latents, ``(x_next - x) /
(sigma_next - sigma)``; UniPC keeps its own x0 prediction of the last step (``model_outputs``).

The latent goes to RGB by ComfyUI's linear projection for the Wan 2.1 VAE latent (16 channels,
the normalised latent the sampler works on), which diffusers' Wan pipeline uses as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: ComfyUI ``comfy/latent_formats.py``, ``Wan21.latent_rgb_factors``: (16 latent channels, RGB).
WAN21_RGB_FACTORS = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
WAN21_RGB_BIAS = (-0.1835, -0.0868, -0.3360)


def clean_from_euler(latents: torch.Tensor, previous: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """x0 predicted at the step that took ``previous`` (at ``sigma``) to ``latents`` (at
    ``sigma_next``) by an Euler step: ``x0 = x - sigma * v`` with the step's own ``v``."""
    velocity = (latents.float() - previous.float()) / (sigma_next - sigma)
    return latents.float() - sigma_next * velocity


def latent_to_rgb(latents: torch.Tensor) -> torch.Tensor:
    """Normalised Wan latents (16, frames, h, w) -> uint8 RGB (frames, h, w, 3), values clamped
    into range the way ComfyUI's previewer does (``(rgb + 1) / 2``)."""
    if latents.ndim != 4 or not 1 <= latents.shape[0] <= len(WAN21_RGB_FACTORS):
        raise ValueError(f"expected Wan latents of shape (16, frames, h, w), got {tuple(latents.shape)}")
    # A latent of fewer channels (the tests' tiny VAE) takes the first rows: a picture of the
    # right shape, only meaningful for the real 16.
    factors = torch.tensor(WAN21_RGB_FACTORS[: latents.shape[0]], dtype=torch.float32, device=latents.device)
    bias = torch.tensor(WAN21_RGB_BIAS, dtype=torch.float32, device=latents.device)
    rgb = torch.einsum("cfhw,cr->fhwr", latents.float(), factors) + bias
    return ((rgb + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8)


class CleanPrediction:
    """Follows one denoising run's latents and gives the x0 of a step as preview frames.

    ``keep`` is called with the latents of the step before a preview step (Euler needs two
    consecutive latents); ``frames`` then picks the latent frames to show and projects them,
    on the latents' device, returning a tensor whose copy to the CPU is already under way.
    """

    def __init__(self, frame_indices: list[int]) -> None:
        self.frame_indices = frame_indices
        self._previous: torch.Tensor | None = None
        self._previous_index = -2

    def keep(self, index: int, latents: torch.Tensor) -> None:
        # Only the frames the preview shows: a few MB less to copy at 640x640x81.
        self._previous = latents[0, :, self.frame_indices].detach().clone()
        self._previous_index = index

    def clean(self, scheduler: Any, index: int, latents: torch.Tensor) -> torch.Tensor | None:
        """x0 of step ``index`` (0-based), for the kept frames only, or None when it cannot be
        known (the first Euler step, whose starting latents the callback never sees)."""
        outputs = getattr(scheduler, "model_outputs", None)
        if outputs and outputs[-1] is not None and getattr(scheduler.config, "predict_x0", False):
            # UniPC converts each model output to its x0 prediction and keeps it.
            x0: torch.Tensor = outputs[-1][0, :, self.frame_indices].float()
            return x0
        if self._previous is None or self._previous_index != index - 1:
            return None
        sigmas = scheduler.sigmas
        sigma, sigma_next = float(sigmas[index]), float(sigmas[index + 1])
        return clean_from_euler(latents[0, :, self.frame_indices], self._previous, sigma, sigma_next)

    def frames(self, scheduler: Any, index: int, latents: torch.Tensor) -> torch.Tensor | None:
        """The preview frames of step ``index``; call before ``keep`` of the same step."""
        x0 = self.clean(scheduler, index, latents)
        self._previous = None
        if x0 is None:
            return None
        rgb = latent_to_rgb(x0)
        if rgb.device.type == "cuda":
            return rgb.to("cpu", non_blocking=True)  # read on the preview thread, after a sync
        return rgb


def to_numpy(rgb: torch.Tensor, ready: Any | None = None) -> np.ndarray:
    """The preview frames as numpy, once the copy has landed (``ready``: a CUDA event)."""
    if ready is not None:
        ready.synchronize()
    return np.ascontiguousarray(rgb.numpy())
