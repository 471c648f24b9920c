"""The ``wan`` backend: Wan2.2 I2V A14B through diffusers' ``WanImageToVideoPipeline``.

The pipeline is loaded once, in the constructor, and reused for every segment. Foreign errors are
translated here, at the edge: CUDA/CPU out-of-memory -> OutOfMemory, a stop asked for by the
progress callback -> Cancelled, an unreadable start image -> BadInput, anything else ->
GenerationError. An end keyframe goes in as the pipeline's ``last_image`` (first-last-frame).

Every take's final latents come back with its frames (worker.wan.latents), and a ``hand_off``
continues from the previous take's latents the SVI 2.0 Pro way (worker.wan.svi); latents that do
not fit this model or size fall back to the start image, with a note saying why.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import secrets
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from worker.backend import PreviewCallback, SegmentFrames, StepCallback, WaitCallback, check_inputs
from worker.errors import BadInput, Cancelled, GenerationError, OutOfMemory, is_out_of_memory
from worker.hand_off import FRAME, SVI, LatentHandOff
from worker.images import prepare_start_image
from worker.live_preview import pick_frames
from worker.wan.fp8 import release_mapped_weights
from worker.wan.latent_preview import CleanPrediction, to_numpy
from worker.wan.latents import LatentInfo, LatentMismatch, TakeLatents, fingerprint, load_latents
from worker.wan.loader import Plan, load_model, plan_for
from worker.wan.options import WanOptions
from worker.wan.svi import SviCondition, SviImageToVideoPipeline

log = logging.getLogger("framechain.worker")

#: Seeds drawn when none is given stay below 2**53 so they survive any JSON reader intact.
_SEED_RANGE = 2**53
#: Anchor latents kept (one per session picture and size in use); each is a few hundred KB.
_ANCHORS_KEPT = 8


class _StopRequested(Exception):
    """Raised inside the pipeline's step callback to leave the denoising loop at once (setting
    ``pipe._interrupt`` would still run the remaining loop iterations and the VAE decode)."""


class WanBackend:
    name = "wan"
    preview = False
    #: Continues from a previous take's latents (worker.hand_off).
    latent_hand_off = True

    def __init__(self, options: WanOptions, *, plan: Plan | None = None, memory_plan: str = "") -> None:
        """``memory_plan``: the plan's line (shared.memory_plan.Plan.describe) the worker checked
        before loading, reported in ``ready``."""
        self.options = options
        self.plan = plan or plan_for(options)
        loaded = load_model(options, self.plan)
        self.pipe: Any = loaded.pipe
        self.source = loaded.source
        self.memory_plan = memory_plan
        text_encoder: Any = getattr(self.pipe, "text_encoder", None)
        if options.low_ram and text_encoder is not None:
            # The prompt is encoded: hand the encoder's mapped fp8 weights back until the next one.
            def encoded(module: Any, args: Any, out: Any) -> None:
                release_mapped_weights(module)

            text_encoder.register_forward_hook(encoded)
        # What a take's latents were made with: cheap fingerprints of the weight files.
        self.vae_hash = fingerprint([self._weights("vae")])
        self.model_hash = fingerprint(
            [self._weights("transformer"), self._weights("transformer_2"), *(lo.path for lo in options.loras)],
            extra=" ".join(f"{lo.target}:{lo.scale}" for lo in options.loras),
        )
        self._anchors: dict[tuple[str, int, int], Any] = {}

    def _weights(self, role: str) -> str:
        """The file ``role`` was loaded from, or its folder in the diffusers model."""
        where = self.source.components.get(role, "")
        return where if Path(where).is_file() else str(Path(self.options.model).expanduser() / role)

    def describe(self) -> dict[str, Any]:
        """What the worker's ``ready`` message reports about this backend: among the rest, the
        model source actually used (each component's file or folder, the tokenizer's origin) and
        the memory profile with its plan."""
        o = self.options
        return {
            "model": self.source.model or "not used (all four single files)",
            **self.source.components,
            "tokenizer": self.source.tokenizer,
            "device": str(self.plan.device),
            "dtype": str(self.plan.dtype).removeprefix("torch."),
            "memory_profile": self.plan.placement,
            "low_ram": o.low_ram,
            "memory_plan": self.memory_plan,
            "sampler": o.sampler,
            "shift": o.shift,
            "boundary_ratio": o.boundary_ratio,
            "attention_backend": o.attention_backend or "default",
            "compile": o.compile and self.plan.device.type == "cuda",
            "loras": [{"path": lo.path, "scale": lo.scale, "target": lo.target} for lo in o.loras],
        }

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
        on_wait: WaitCallback | None = None,  # never called: its jobs wait on no one else's queue
        end_image: Image.Image | None = None,
        on_preview: PreviewCallback | None = None,
        hand_off: LatentHandOff | None = None,
    ) -> SegmentFrames:
        # 1. Check inputs before any work.
        check_inputs(
            image=image, prompt=prompt, width=width, height=height, frames=frames,
            steps=steps, guidance=guidance, guidance_2=guidance_2, seed=seed, end_image=end_image,
        )  # fmt: skip
        if not isinstance(negative_prompt, str):
            raise BadInput(f"negative_prompt must be a string, got {type(negative_prompt).__name__}")
        if guidance <= 1.0 < guidance_2:
            # diffusers runs CFG for both experts only when the first guidance is above 1.
            raise BadInput(
                f"guidance_2 {guidance_2} has no effect while guidance is {guidance} (a guidance <= 1 turns CFG "
                "off for both experts): set guidance above 1, or guidance_2 to 1"
            )

        # 2. Prepare the start image (and an end keyframe) at the exact output size, so both
        #    are cropped alike and the pipeline's own resize changes nothing.
        try:
            start = prepare_start_image(image, width, height)
        except (OSError, ValueError) as exc:
            raise BadInput(f"the start image could not be read: {exc}") from exc
        end = None
        if end_image is not None:
            try:
                end = prepare_start_image(end_image, width, height)
            except (OSError, ValueError) as exc:
                raise BadInput(f"the end image could not be read: {exc}") from exc

        # 2b. SVI hand-off: the anchor and the previous take's last latents, when they fit.
        condition: SviCondition | None = None
        note = ""
        if hand_off is not None:
            try:
                condition = self._svi_condition(hand_off, width=width, height=height, frames=frames, end=end)
            except LatentMismatch as exc:
                note = f"{exc}; this take continues from the last frame instead"
                log.info("svi hand-off refused: %s", note)
            except Exception as exc:  # the anchor's VAE encode
                if is_out_of_memory(exc):
                    self._recover()
                    raise OutOfMemory(f"out of memory encoding the svi anchor at {width}x{height}: {exc}") from None
                raise

        # 3. Seed: a CPU generator gives the same noise whatever device the model runs on.
        if seed is None:
            seed = secrets.randbelow(_SEED_RANGE)
        generator = torch.Generator(device="cpu").manual_seed(seed)

        # 4. Per-step progress; a True from on_step stops at once. Under low_ram, each model's
        #    mapped weights are handed back once its turn is over (worker.wan.mapped_file).
        done = 0
        # The Wan VAE packs 4 frames into a latent frame (after the first).
        latent_frames = (frames - 1) // getattr(self.pipe, "vae_scale_factor_temporal", 4) + 1
        clean = CleanPrediction(pick_frames(latent_frames))
        final: Any = None

        def step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal done, final
            done = index + 1
            if index == len(pipe.scheduler.timesteps) - 1:
                # The denoised latents the pipeline decodes next: kept as they are, so the video
                # is the pipeline's own decode, unchanged.
                final = tensors["latents"].detach().to("cpu", copy=True)
            if self.options.low_ram:
                self._release_finished(pipe, index)
            if on_preview is not None:
                self._preview(on_preview, clean, pipe, index, steps, tensors["latents"])
            if on_step is not None and on_step(done, steps):
                raise _StopRequested
            return tensors

        # 5. Denoise and decode. The pipeline's frames (and their tensors) must be gone before
        #    memory is released, so the failure is raised after the except block, unchained.
        failure: GenerationError | None = None
        if condition is not None:
            self.pipe.svi = condition
        try:
            output = self.pipe(
                image=start,
                # First-last-frame: the conditioning mask then marks the last latent frame too.
                last_image=end,
                prompt=prompt,
                negative_prompt=negative_prompt,
                height=height,
                width=width,
                num_frames=frames,
                num_inference_steps=steps,
                guidance_scale=guidance,
                guidance_scale_2=guidance_2,
                generator=generator,
                output_type="np",
                callback_on_step_end=step_end,
            )
        except _StopRequested:
            failure = Cancelled(f"stopped on request after step {done} of {steps}")
        except Exception as exc:
            if is_out_of_memory(exc):  # also cuDNN/cuBLAS allocation failures
                failure = OutOfMemory(f"out of memory generating {width}x{height}x{frames}: {exc}")
            else:
                # As text: a record holding exc_info would keep the failed call's frames alive.
                log.error("generation failed:\n%s", "".join(traceback.format_exception(exc)).rstrip())
                failure = GenerationError(f"generation failed: {type(exc).__name__}: {exc}")
        finally:
            if condition is not None:
                self.pipe.svi = None
            if self.options.low_ram:
                for model in (self.pipe.text_encoder, self.pipe.transformer, self.pipe.transformer_2):
                    release_mapped_weights(model)
        if failure is not None:
            self._recover()
            raise failure

        # 6. float [0, 1] -> uint8, the way diffusers turns arrays into images.
        video = np.asarray(output.frames[0])
        if video.shape != (frames, height, width, 3):
            raise GenerationError(f"pipeline returned shape {video.shape}, expected {(frames, height, width, 3)}")
        pixels = (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        latents = None
        if final is not None:
            info = LatentInfo(
                seed=seed, prompt=prompt, steps=steps, width=width, height=height, frames=frames,
                vae_hash=self.vae_hash, model_hash=self.model_hash,
                continued_from=hand_off.previous.name if condition is not None and hand_off is not None else "",
            )  # fmt: skip
            latents = TakeLatents(final, info)
        return SegmentFrames(
            frames=pixels, seed=seed, latents=latents, continuity=SVI if condition is not None else FRAME, note=note
        )

    def _svi_condition(
        self, hand_off: LatentHandOff, *, width: int, height: int, frames: int, end: Image.Image | None
    ) -> SviCondition:
        """The SVI condition of this clip, or LatentMismatch saying why the previous take's latents
        cannot make it."""
        if not isinstance(self.pipe, SviImageToVideoPipeline):
            raise LatentMismatch("this pipeline cannot take latent conditioning")
        if end is not None:
            raise LatentMismatch("an end keyframe is aimed at from a start image, not from latents")
        latents, info = load_latents(hand_off.previous)
        if info.vae_hash != self.vae_hash:
            raise LatentMismatch("the previous take's latents were made with another VAE")
        if info.model_hash != self.model_hash:
            raise LatentMismatch("the previous take's latents were made with other model weights")
        if (info.width, info.height) != (width, height):
            raise LatentMismatch(
                f"the previous take's latents are {info.width}×{info.height}, this take is {width}×{height}"
            )
        spatial = getattr(self.pipe, "vae_scale_factor_spatial", 8)
        z_dim = self.pipe.vae.config.z_dim
        count = hand_off.motion_latents
        if (
            latents.ndim != 5
            or tuple(latents.shape[:2]) != (1, z_dim)
            or latents.shape[3:] != (height // spatial, width // spatial)
        ):
            raise LatentMismatch(f"the previous take's latents have shape {tuple(latents.shape)}, not this clip's")
        latent_frames = (frames - 1) // getattr(self.pipe, "vae_scale_factor_temporal", 4) + 1
        if not 1 <= count < latent_frames or count > latents.shape[2]:
            raise LatentMismatch(f"{count} motion latent(s) do not fit a clip of {latent_frames} latent frames")
        return SviCondition(anchor=self._anchor(hand_off.anchor, width, height), motion=latents[:, :, -count:])

    def _anchor(self, picture: Image.Image, width: int, height: int) -> Any:
        """The session's first picture VAE-encoded at this size, once per worker."""
        start = prepare_start_image(picture, width, height)
        key = (hashlib.sha256(start.tobytes()).hexdigest(), width, height)
        anchor = self._anchors.get(key)
        if anchor is None:
            anchor = self.pipe.encode_anchor(start, height, width)
            if len(self._anchors) >= _ANCHORS_KEPT:
                self._anchors.pop(next(iter(self._anchors)))
            self._anchors[key] = anchor
        return anchor

    @staticmethod
    def _preview(
        on_preview: PreviewCallback, clean: CleanPrediction, pipe: Any, index: int, steps: int, latents: Any
    ) -> None:
        """Hand step ``index``'s x0 over as preview frames: a few small tensor operations here,
        the rest (waiting for the copy, the picture, the file) on the preview writer's thread.
        Cosmetic, so a failure is logged and the step goes on."""
        step = index + 1
        try:
            rgb = clean.frames(pipe.scheduler, index, latents) if on_preview.wants(step, steps) else None
            # Only after this step's x0 is made from the latents kept a step ago.
            if on_preview.wants(step + 1, steps):
                clean.keep(index, latents)
            if rgb is None:
                return
            ready = None
            if latents.device.type == "cuda":
                ready = torch.cuda.Event()  # type: ignore[no-untyped-call]
                ready.record()
            on_preview(step, steps, lambda: to_numpy(rgb, ready))
        except Exception as exc:
            log.warning("no preview at step %s: %s: %s", step, type(exc).__name__, exc)

    def _release_finished(self, pipe: Any, index: int) -> None:
        """After step ``index``: once the last high-noise step has run, the high-noise expert is
        idle until the next segment."""
        timesteps = pipe.scheduler.timesteps
        boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
        if index + 1 < len(timesteps) and timesteps[index] >= boundary > timesteps[index + 1]:
            release_mapped_weights(pipe.transformer)

    def _recover(self) -> None:
        """Leave the pipeline ready for the next call after a failed one."""
        try:
            self.pipe.maybe_free_model_hooks()
        finally:
            gc.collect()
            if self.plan.device.type == "cuda":
                torch.cuda.empty_cache()
