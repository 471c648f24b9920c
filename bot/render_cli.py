"""``framechain render``: a chained render without any chat.

Each segment starts from the previous segment's hand-off frame; the segment masters and PNGs go
into a folder named after the output; then the approved (here: all) segments are joined.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core_model import SEED_LIMIT
from bot.core_settings import clean_prompt
from bot.worker_client import WorkerError, WorkerProcess, worker_command
from shared import params
from shared.color_reference import color_reference, continuity_of
from shared.config import Config, LimitsConfig
from shared.drift import DriftFigures, drift_line
from shared.pictures import Accepted, Refused, check_file_size, check_picture
from shared.protocol import Done, FailureKind, Generate, Progress

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: The longest segment the model is made for (5 s at 16 fps).
MAX_FRAMES = max(params.SECONDS_TO_FRAMES.values())


class RenderInputError(ValueError):
    """Bad input to render: printed as one line, exit status 2."""


@dataclass(frozen=True)
class SegmentPlan:
    prompt: str
    frames: int
    steps: int
    seed: int | None


@dataclass(frozen=True)
class RenderPlan:
    image: Path
    #: The start image as the chat would store it (upright RGB PNG); the worker starts from this.
    picture: Accepted
    out: Path
    backend: str
    model: str | None
    width: int
    height: int
    fps: int
    segments: tuple[SegmentPlan, ...]


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("storyboard", nargs="?", help="a storyboard TOML (start image, [[segment]] prompts)")
    p.add_argument("--image", help="start image")
    p.add_argument("--prompt", action="append", default=[], help="one per segment, in order")
    p.add_argument("--out", help="the final video (default: next to the storyboard, or final.mp4)")
    p.add_argument("--backend", choices=["wan", "preview"])
    p.add_argument("--model", help="diffusers folder or hub id (wan backend)")
    p.add_argument("--frames", type=int, help="frames per segment: 33, 49, 65 or 81 (4k+1)")
    p.add_argument("--size", help="WxH, both multiples of 16 (default: fit the image's aspect ratio)")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int, help="seed of the first segment; later ones use seed+index")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RenderInputError(f"size must look like 640x640, got {text!r}") from None
    try:
        return params.check_side("width", w), params.check_side("height", h)
    except params.ParameterError as exc:
        raise RenderInputError(f"size: {exc}") from None


def _typed(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RenderInputError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    return value


def plan_render(args: argparse.Namespace, config: Config) -> RenderPlan:
    """Check every input before any work starts; raise RenderInputError naming what is wrong."""
    g = config.generation
    settings: dict[str, Any] = {}
    segments: list[dict[str, Any]] = []
    image_text = args.image
    base = Path.cwd()
    out_text = args.out
    if args.storyboard:
        path = Path(args.storyboard)
        try:
            board = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RenderInputError(f"storyboard not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RenderInputError(f"storyboard {path} is not valid TOML: {exc}") from None
        base = path.parent
        unknown = sorted(set(board) - {"image", "out", "settings", "segment"})
        if unknown:
            raise RenderInputError(f"storyboard {path}: unknown key {unknown[0]}")
        settings = board.get("settings", {})
        if not isinstance(settings, dict):
            raise RenderInputError(f"storyboard {path}: [settings] must be a table")
        unknown = sorted(set(settings) - {"backend", "model", "frames", "size", "steps", "seed", "fps"})
        if unknown:
            raise RenderInputError(f"storyboard {path}: unknown setting {unknown[0]}")
        segments = board.get("segment", [])
        if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
            raise RenderInputError(f"storyboard {path}: segments must be [[segment]] tables")
        image_text = image_text or _typed(board, "image", str, str(path))
        if not out_text:
            out_in_board = _typed(board, "out", str, str(path))
            out_text = str(base / out_in_board) if out_in_board else str(base / f"{path.stem}.mp4")
        image_text = image_text if args.image else (str(base / image_text) if image_text else None)
    if args.prompt:
        segments = [{"prompt": p} for p in args.prompt]
    if not image_text:
        raise RenderInputError("no start image: give --image or `image` in the storyboard")
    if not segments:
        raise RenderInputError("no prompts: give --prompt (once per segment) or [[segment]] entries")

    image = Path(image_text)
    picture = load_picture(image, config.limits)
    image_w, image_h = picture.width, picture.height

    where = "settings"
    backend = args.backend or _typed(settings, "backend", str, where) or g.backend
    if backend not in ("wan", "preview"):
        raise RenderInputError(f"backend must be wan or preview, got {backend!r}")
    fps = _typed(settings, "fps", int, where) or g.fps
    # `is not None`, not `or`: --steps 0 is refused, not read as "the default".
    default_frames = _given(args.frames, _typed(settings, "frames", int, where), g.frames)
    default_steps = _given(args.steps, _typed(settings, "steps", int, where), g.sampling_steps)
    seed = args.seed if args.seed is not None else _typed(settings, "seed", int, where)
    size_text = args.size or _typed(settings, "size", str, where)
    if size_text:
        width, height = _parse_size(size_text)
    else:
        width, height = params.segment_size(image_w, image_h, g.width, g.height, g.size_mode)
    if width * height > config.limits.max_pixels:
        raise RenderInputError(f"size {width}x{height} is over the limit of {config.limits.max_pixels} pixels")

    plans = []
    for i, seg in enumerate(segments, start=1):
        where = f"segment {i}"
        unknown = sorted(set(seg) - {"prompt", "frames", "steps", "seed"})
        if unknown:
            raise RenderInputError(f"{where}: unknown key {unknown[0]}")
        # As the chat takes it: invisible ends trimmed, nothing visible = no prompt.
        prompt = clean_prompt(_typed(seg, "prompt", str, where) or "")
        if not prompt:
            raise RenderInputError(f"{where}: prompt is empty")
        if len(prompt) > config.limits.prompt_chars:
            raise RenderInputError(
                f"{where}: prompt is {len(prompt)} characters, over the limit of {config.limits.prompt_chars}"
            )
        frames = _given(_typed(seg, "frames", int, where), default_frames)
        try:
            params.check_frames(frames)
        except params.ParameterError as exc:
            raise RenderInputError(f"{where}: {exc}") from None
        if frames > MAX_FRAMES:
            raise RenderInputError(f"{where}: frames must be at most {MAX_FRAMES} (the model's 5 s), got {frames}")
        steps = _given(_typed(seg, "steps", int, where), default_steps)
        if not 1 <= steps <= config.limits.max_steps:
            raise RenderInputError(f"{where}: steps must be between 1 and {config.limits.max_steps}, got {steps}")
        seg_seed = _typed(seg, "seed", int, where)
        if seg_seed is None:
            seg_seed = _seed_for(config, seed, i - 1)
        if seg_seed is not None and not 0 <= seg_seed < SEED_LIMIT:
            raise RenderInputError(f"{where}: seed must be a whole number from 0 to 2^63-1, got {seg_seed}")
        plans.append(SegmentPlan(prompt=prompt, frames=frames, steps=steps, seed=seg_seed))
    out = Path(out_text or "final.mp4")
    if out.suffix.lower() != ".mp4":
        raise RenderInputError(f"--out must be an .mp4 file, got {out}")
    model = args.model or _typed(settings, "model", str, "settings")
    return RenderPlan(
        image=image,
        picture=picture,
        out=out,
        backend=backend,
        model=model,
        width=width,
        height=height,
        fps=fps,
        segments=tuple(plans),
    )


def load_picture(path: Path, limits: LimitsConfig) -> Accepted:
    """An image file checked by the chat's start-picture policy; RenderInputError if refused.

    For the start image and for any other image a storyboard names."""
    if path.is_dir():
        raise RenderInputError(f"image is a directory: {path}")
    try:
        too_large = check_file_size(path.stat().st_size, limits)
        data = b"" if too_large else path.read_bytes()
    except FileNotFoundError:
        raise RenderInputError(f"image not found: {path}") from None
    except OSError as exc:
        raise RenderInputError(f"cannot read image {path}: {exc.strerror}") from None
    result = too_large or check_picture(data, limits)
    if isinstance(result, Refused):
        raise RenderInputError(f"image {path}: {result.reason}")
    return result


def _given(*values: int | None) -> int:
    """The first value given (0 included)."""
    return next(v for v in values if v is not None)


def _seed_for(config: Config, seed: int | None, index: int) -> int | None:
    if seed is not None:
        return seed + index
    policy = config.generation.seed_policy
    if policy == "fixed":
        return config.generation.seed
    if policy == "increment":
        return config.generation.seed + index
    return None


def cmd_render(args: argparse.Namespace, config: Config) -> int:
    try:
        plan = plan_render(args, config)
    except RenderInputError as exc:
        print(f"framechain render: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(render(plan, config, config_path=args.config))


class _Bar:
    """A one-line progress bar on stderr, redrawn in place when stderr is a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def show(self, label: str, step: int, total: int) -> None:
        if not self.tty:
            return
        width = 30
        filled = int(width * step / max(total, 1))
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {step}/{total}")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


async def render(plan: RenderPlan, config: Config, *, config_path: str | None = None) -> int:
    from worker.files import atomic_write_bytes  # imports no torch
    from worker.video import join_segments

    folder = plan.out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    first = (folder / "start.png").resolve()
    await asyncio.to_thread(atomic_write_bytes, first, plan.picture.png)
    g = config.generation
    negative = g.negative_prompt
    device = config.workers.devices[0]
    # The worker logs warnings only: render prints its own line per segment.
    command = worker_command(
        device=device, backend=plan.backend, config_path=config_path, model=plan.model, log_level="WARNING"
    )
    worker = WorkerProcess(command, name="worker")
    bar = _Bar()
    total = len(plan.segments)
    print(f"rendering {total} segment(s) at {plan.width}x{plan.height}, {plan.fps} fps, backend {plan.backend}")
    try:
        ready = await worker.start()
        if ready.preview:
            print("note: preview backend: a stand-in animation, not a Wan generation")
        start_image = first
        masters: list[Path] = []
        previous: DriftFigures | None = None
        # generation.continuity = "svi": each segment after the first continues from the one
        # before's latents, and drops the frames it shares with it when joined.
        svi = g.continuity == "svi" and g.svi_available
        previous_latents: str | None = None
        overlaps: list[int] = []
        for index, seg in enumerate(plan.segments, start=1):
            hand_off: dict[str, Any] = {}
            if svi and index > 1:
                hand_off = {
                    "continuity": "svi",
                    "anchor_image": str(first),
                    "previous_latents": previous_latents,
                    "motion_latents": g.svi_motion_latents,
                }
            label = f"segment {index}/{total}"
            reference = color_reference(
                g.color_match,
                number=index,
                start_image=start_image,
                first_image=first,
                continuity=continuity_of(g, {}),
                first_from=g.color_first_from,
            )
            job = Generate(
                job_id=uuid.uuid4().hex,
                image=str(start_image),
                prompt=seg.prompt,
                negative_prompt=negative,
                width=plan.width,
                height=plan.height,
                frames=seg.frames,
                fps=plan.fps,
                steps=seg.steps,
                guidance=g.sampling_guidance[0],
                guidance_2=g.sampling_guidance[1],
                seed=seg.seed,
                out_dir=str(folder.resolve()),
                name=f"segment_{index:02d}",
                color_reference=str(reference) if reference is not None else None,
                color_strength=g.color_strength,
                color_lightness=g.color_lightness,
                drift_reference=str(first),
                **hand_off,
            )
            started = time.monotonic()

            def progress(event: Progress, label: str = label) -> None:
                bar.show(label, event.step, event.total)

            result = await worker.run(job, progress)
            bar.clear()
            if not isinstance(result, Done):
                print(f"framechain render: {label} failed: {result.message}", file=sys.stderr)
                return EXIT_USAGE if result.kind is FailureKind.BAD_INPUT else EXIT_FAILURE
            seconds = time.monotonic() - started
            print(
                f"{label}: {result.frames} frames, seed {result.seed}, {seconds:.1f} s -> {result.video}",
                flush=True,
            )
            figures = DriftFigures.from_json(result.drift) if result.drift is not None else None
            if figures is not None and (line := drift_line(index, figures, previous)):
                print(f"  {line}", flush=True)
            previous = figures
            if result.note:
                print(f"{label}: note: {result.note}", flush=True)
            masters.append(Path(result.video))
            overlaps.append(0 if index == 1 else params.overlap_frames(result.continuity, g.svi_motion_latents))
            previous_latents = result.latents
            start_image = Path(result.last_frame)
    except WorkerError as exc:
        bar.clear()
        print(f"framechain render: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await worker.stop()
    joined = await asyncio.to_thread(join_segments, masters, plan.out, fps=plan.fps, overlaps=overlaps)
    print(f"final: {joined.frames} frames, {joined.seconds:.2f} s -> {plan.out}")
    return EXIT_OK
