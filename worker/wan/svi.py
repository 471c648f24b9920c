"""SVI 2.0 Pro latent continuity: the I2V conditioning built from latents instead of a picture.

Stable Video Infinity 2.0 Pro (vita-epfl/Stable-Video-Infinity, Wan2.2 A14B, ``svi_wan22``) trains
LoRAs so that each clip is conditioned on

    y = [anchor latent | last latent(s) of the previous clip | zeros]      (in latent frames)

with only the first latent frame marked as known in the mask. Followed here, from the published
code and its notes:

- ``diffsynth/pipelines/wan_video_svi_pro.py``, ``WanVideoUnit_ImageEmbedderVAE.process``:
  ``anchor_latent = vae.encode(anchor)``, ``motion_latent = prev_last_latent[:, -num_motion_latent:]``,
  ``padding = torch.zeros(...)``, ``y = torch.concat([anchor_latent, motion_latent, padding], dim=1)``;
  the mask ``msk[:, 1:] = 0`` over pixel frames, the first repeated 4 times, i.e. ones on latent
  frame 0 only; ``num_motion_latent`` defaults to 1 (``inference_svi_2.0_pro.py``).
- ``docs/svi/svi_2.0_pro.md``: the padding "is a zero-valued latent rather than an encoded
  zero-valued image" (ordinary I2V encodes ``[image, 0, 0, ...]`` pixels through the VAE), and
  the decoded last frame is never used to make the next clip.
- KJNodes' ComfyUI node ``WanImageToVideoSVIPro`` builds the same: ``concat_latent_image`` =
  anchor + ``prev_samples[:, :, -motion_latent_count:]`` + zeros (zero in the model's normalised
  space), ``concat_mask`` known on latent frame 0 only.
- ``inference_svi_2.0_pro.py``: the next clip drops its first ``num_overlap_frame = 4`` frames when
  appended (one latent frame of overlap); a new seed per clip.

All latents here are in the pipeline's normalised space (``(z - mean) / std``), the space the
denoising loop works in, so a take's final latents go back in without a VAE round trip.

diffusers' ``WanImageToVideoPipeline`` has no hook for its conditioning, so
``SviImageToVideoPipeline`` overrides ``prepare_latents`` only; with no ``svi`` condition set it
is the parent, call for call (the ``frame`` path and its ComfyUI-equivalent seed graph are
untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor

#: Latent frames of the previous take that condition the next (the published default).
DEFAULT_MOTION_LATENTS = 1


@dataclass(frozen=True)
class SviCondition:
    """The latents one SVI clip is conditioned on, normalised, batch 1.

    ``anchor``: (1, C, 1, h, w), the session's first picture VAE-encoded; ``motion``:
    (1, C, k, h, w), the last ``k`` latent frames of the approved previous take."""

    anchor: torch.Tensor
    motion: torch.Tensor


def svi_condition(condition: SviCondition, num_latent_frames: int) -> torch.Tensor:
    """``[anchor | motion | zeros]`` over ``num_latent_frames`` latent frames."""
    anchor, motion = condition.anchor, condition.motion
    used = anchor.shape[2] + motion.shape[2]
    if used > num_latent_frames:
        raise ValueError(f"{used} conditioning latent frames do not fit a clip of {num_latent_frames}")
    padding = anchor.new_zeros(anchor.shape[0], anchor.shape[1], num_latent_frames - used, *anchor.shape[3:])
    return torch.cat([anchor, motion.to(anchor), padding], dim=2)


def svi_mask(batch: int, num_latent_frames: int, height: int, width: int, temporal: int = 4) -> torch.Tensor:
    """The I2V mask channels (B, temporal, T, h, w): ones (known) on latent frame 0, zeros after,
    laid out as diffusers lays out its own first-frame mask."""
    mask = torch.zeros(batch, temporal, num_latent_frames, height, width)
    mask[:, :, 0] = 1
    return mask


#: diffusers' pipeline sets its attributes (vae, config, ...) at run time; typed as Any here.
_Pipeline: Any = WanImageToVideoPipeline


class SviImageToVideoPipeline(_Pipeline):  # type: ignore[misc]
    """``WanImageToVideoPipeline`` whose conditioning step can take SVI latents.

    Set ``svi`` to an SviCondition for one call (worker.wan.backend does, and clears it after);
    the noise is drawn exactly as the parent draws it, so the seed means the same in both modes."""

    svi: SviCondition | None = None

    def prepare_latents(
        self,
        image: Any,
        batch_size: int,
        num_channels_latents: int = 16,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
        generator: Any = None,
        latents: torch.Tensor | None = None,
        last_image: torch.Tensor | None = None,
    ) -> Any:
        condition = self.svi
        if condition is None:
            return super().prepare_latents(
                image, batch_size, num_channels_latents, height, width, num_frames,
                dtype, device, generator, latents, last_image,
            )  # fmt: skip
        if last_image is not None or self.config.expand_timesteps:
            raise ValueError("SVI continuity takes no end image and needs the A14B I2V layout")
        num_latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        latent_height = height // self.vae_scale_factor_spatial
        latent_width = width // self.vae_scale_factor_spatial
        shape = (batch_size, num_channels_latents, num_latent_frames, latent_height, latent_width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)
        expected = (num_channels_latents, latent_height, latent_width)
        for name, tensor in (("anchor", condition.anchor), ("motion", condition.motion)):
            if (tensor.shape[1], *tensor.shape[3:]) != expected:
                needs = f"(1, {expected[0]}, k, {latent_height}, {latent_width})"
                raise ValueError(f"the {name} latents are {tuple(tensor.shape)}, this clip needs {needs}")
        y = svi_condition(condition, num_latent_frames).to(device=device, dtype=dtype).repeat(batch_size, 1, 1, 1, 1)
        mask = svi_mask(batch_size, num_latent_frames, latent_height, latent_width, self.vae_scale_factor_temporal)
        return latents, torch.cat([mask.to(y), y], dim=1)

    @torch.no_grad()
    def encode_anchor(self, image: Any, height: int, width: int) -> torch.Tensor:
        """The anchor latent (1, C, 1, h, w) of a picture already at the clip's size, normalised
        the way ``prepare_latents`` normalises its condition."""
        pixels = self.video_processor.preprocess(image, height=height, width=width).to(torch.float32)
        pixels = pixels.unsqueeze(2).to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        latent = retrieve_latents(self.vae.encode(pixels), sample_mode="argmax").to(torch.float32)
        z_dim = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latent)
        inverse_std = 1.0 / torch.tensor(self.vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latent)
        anchor: torch.Tensor = ((latent - mean) * inverse_std).cpu()
        return anchor
