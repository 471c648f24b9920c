"""The worker process: one per device, speaking the JSON-lines protocol of shared.protocol.

The backend is loaded once, then ``ready`` is written and jobs run one at a time on the main
thread. A reader thread keeps reading stdin while a job runs, so ``cancel`` and ``shutdown`` take
effect within one denoising step. stdout carries protocol messages only: the real stdout is kept
for them and file descriptor 1 is pointed at stderr, so a stray print from any library cannot
corrupt the stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from PIL import Image

from shared.config import LimitsConfig
from shared.params import overlap_frames
from shared.pictures import PictureRefused, read_picture
from shared.protocol import (
    Cancel,
    Done,
    Failed,
    FailureKind,
    Generate,
    Message,
    Preview,
    Progress,
    ProtocolError,
    Queued,
    Ready,
    Shutdown,
    decode,
    encode,
)
from worker.backend import Backend, SegmentFrames, StepCallback, WaitCallback
from worker.errors import BackendLost, BadInput, Cancelled, GenerationError
from worker.hand_off import SVI, HandOffBackend, LatentHandOff
from worker.interpolate import TakeInterpolator
from worker.live_preview import PreviewWriter, preview_steps
from worker.segment_files import write_segment_files

log = logging.getLogger("framechain.worker")


class ParentGone(Exception):
    """The process reading our stdout is gone (EPIPE): nobody is left to report to."""


class ProtocolOut:
    """Writes protocol messages, one line each, from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.gone = False

    def send(self, message: Message) -> None:
        line = encode(message)
        with self._lock:
            if self.gone:
                raise ParentGone
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError):
                # ValueError: the stream was closed. Point the descriptor at /dev/null so the
                # interpreter's own flush at exit does not print a BrokenPipeError either.
                self.gone = True
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self._stream.fileno())
                    os.close(devnull)
                raise ParentGone from None


def claim_stdout() -> IO[str]:
    """Return a private text stream on the original stdout and send fd 1 (and sys.stdout) to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


@dataclass
class _Running:
    job_id: str
    cancel: threading.Event


class Worker:
    def __init__(
        self,
        backend: Backend,
        out: ProtocolOut,
        *,
        device: str,
        limits: LimitsConfig | None = None,
        interpolator: TakeInterpolator | None = None,
    ) -> None:
        self.backend = backend
        #: Smooth playback on: each take also gets its 2x copy (worker.interpolate).
        self.interpolator = interpolator
        self.limits = limits or LimitsConfig()
        self.out = out
        self.device = device
        self.jobs: queue.Queue[Generate | None] = queue.Queue()
        self._running: _Running | None = None
        self._cancelled_ids: set[str] = set()
        self._lock = threading.Lock()
        #: stdin ended without a ``shutdown``, or stdout broke: the parent was killed.
        self.parent_gone = False

    def _send(self, message: Message) -> None:
        try:
            self.out.send(message)
        except ParentGone:
            self.parent_gone = True
            raise

    # --- input ------------------------------------------------------------------------------

    def read_loop(self, stream: IO[str]) -> None:
        """Runs on the reader thread until stdin closes or ``shutdown`` arrives."""
        try:
            self._read(stream)
        except ParentGone:
            pass
        finally:
            # EOF or shutdown: stop the running job and let the main loop end after it.
            with self._lock:
                if self._running is not None:
                    self._running.cancel.set()
            self.jobs.put(None)

    def _read(self, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.strip()
            if not line:
                continue
            try:
                message = decode(line)
            except ProtocolError as exc:
                log.warning("skipping malformed line: %s", exc)
                self._send(Failed(job_id=None, kind=FailureKind.BAD_INPUT, message=f"malformed line: {exc}"))
                continue
            if isinstance(message, Generate):
                self.jobs.put(message)
            elif isinstance(message, Cancel):
                self.cancel(message.job_id)
            elif isinstance(message, Shutdown):
                return
            else:
                self._send(
                    Failed(
                        job_id=None,
                        kind=FailureKind.BAD_INPUT,
                        message=f"{message.type} is not a message a worker accepts",
                    )
                )
        # EOF without a shutdown: whoever started us is gone (a clean stop sends shutdown first).
        self.parent_gone = True

    def cancel(self, job_id: str) -> None:
        with self._lock:
            running = self._running
            if running is not None and running.job_id == job_id:
                running.cancel.set()
                return
            # Not running: remember it so a queued generate for it is dropped, and acknowledge.
            self._cancelled_ids.add(job_id)
        self._send(Failed(job_id=job_id, kind=FailureKind.CANCELLED, message="cancelled before it started"))

    # --- jobs -------------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            with self._lock:
                if job.job_id in self._cancelled_ids:
                    self._cancelled_ids.discard(job.job_id)
                    continue
                self._running = _Running(job.job_id, threading.Event())
            try:
                self._send(self.run_job(job, self._running.cancel))
            except ParentGone:
                return
            finally:
                with self._lock:
                    self._running = None

    def run_job(self, job: Generate, cancel: threading.Event) -> Done | Failed:
        started = time.monotonic()
        try:
            image = load_start_image(job.image, self.limits)
            reference = load_start_image(job.color_reference, self.limits) if job.color_reference else None
            # The end keyframe passed the start picture's checks in the chat; read it the same way.
            end_image = load_start_image(job.end_image, self.limits) if job.end_image else None
            drift_reference = load_start_image(job.drift_reference, self.limits) if job.drift_reference else None
            hand_off, unmet = None, ""
            if job.continuity == SVI and job.previous_latents and job.anchor_image:
                anchor = load_start_image(job.anchor_image, self.limits)
                hand_off = LatentHandOff(anchor, Path(job.previous_latents), job.motion_latents)
            elif job.continuity == SVI:
                unmet = "the previous segment kept no latents; this take continues from the last frame instead"

            # A backend also calls these just to ask whether to stop (ComfyUI, between server
            # messages): only a change is worth a message.
            last: object = None

            def report(message: Progress | Queued, key: object) -> bool:
                nonlocal last
                if key != last:
                    try:
                        self._send(message)
                    except ParentGone:
                        return True  # nobody to deliver to: stop at once
                    last = key
                return cancel.is_set()

            def on_step(step: int, total: int) -> bool:
                return report(Progress(job_id=job.job_id, step=step, total=total), (step, total))

            def on_wait(ahead: int, where: str, eta: float | None) -> bool:
                # The estimate moves with the clock: a new one alone is no reason to write.
                return report(Queued(job_id=job.job_id, ahead=ahead, where=where, eta=eta), ("queued", ahead))

            if cancel.is_set():
                raise Cancelled("cancelled")
            previews = self._preview_writer(job)
            try:
                result = self._generate(job, image, end_image, on_step, on_wait, previews, hand_off)
                if unmet:
                    result = dataclasses.replace(result, note=unmet)
            finally:
                if previews is not None:
                    previews.close()  # its last message goes out before the result's
            if cancel.is_set():
                raise Cancelled("cancelled")
            files = write_segment_files(
                result.frames,
                Path(job.out_dir),
                job.name,
                fps=job.fps,
                color_reference=reference,
                color_strength=job.color_strength,
                color_lightness=job.color_lightness,
                drift_reference=drift_reference,
                # The seam's motion is measured from where the join takes over.
                join_drops=overlap_frames(result.continuity, job.motion_latents),
                latents=result.latents,
                smooth=self.interpolator.double if self.interpolator is not None else None,
            )
        except BackendLost:
            raise  # ends the worker: the dispatcher retries the job on a fresh one
        except GenerationError as exc:
            if self.parent_gone:
                pass  # stopped because the parent is gone; nothing worth a log line
            elif exc.kind is FailureKind.INTERNAL:
                log.exception("job %s failed", job.job_id)
            else:
                log.info("job %s: %s: %s", job.job_id, exc.kind.value, exc)
            return Failed(job_id=job.job_id, kind=exc.kind, message=str(exc) or exc.kind.value)
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            return Failed(job_id=job.job_id, kind=FailureKind.INTERNAL, message=f"{type(exc).__name__}: {exc}")
        frames: np.ndarray = result.frames
        return Done(
            job_id=job.job_id,
            video=str(files.video),
            last_frame=str(files.last_frame),
            frames=int(frames.shape[0]),
            seconds=round(time.monotonic() - started, 3),
            seed=result.seed,
            width=int(frames.shape[2]),
            height=int(frames.shape[1]),
            preview=self.backend.preview,
            drift=files.drift.to_json(),
            latents=str(files.latents) if files.latents is not None else None,
            continuity=result.continuity,
            note=result.note,
        )

    def _generate(
        self,
        job: Generate,
        image: Image.Image,
        end_image: Image.Image | None,
        on_step: StepCallback,
        on_wait: WaitCallback,
        previews: PreviewWriter | None,
        hand_off: LatentHandOff | None = None,
    ) -> SegmentFrames:
        # One argument list for both calls; the hand-off only to a backend that takes it.
        kwargs: dict[str, Any] = {
            "image": image,
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "width": job.width,
            "height": job.height,
            "frames": job.frames,
            "steps": job.steps,
            "guidance": job.guidance,
            "guidance_2": job.guidance_2,
            "seed": job.seed,
            "on_step": on_step,
            "on_wait": on_wait,
            "end_image": end_image,
            "on_preview": previews,
        }
        if hand_off is None:
            return self.backend.generate(**kwargs)
        if getattr(self.backend, "latent_hand_off", False):
            return cast(HandOffBackend, self.backend).generate(**kwargs, hand_off=hand_off)
        result = self.backend.generate(**kwargs)
        note = f"the {self.backend.name} backend keeps no latents; this take continues from the last frame instead"
        return dataclasses.replace(result, note=note)

    def _preview_writer(self, job: Generate) -> PreviewWriter | None:
        """Live previews for ``job``, written beside its segment files and reported as they land."""
        steps = preview_steps(job.steps, job.preview_every)
        if not steps:
            return None

        def written(step: int, total: int, path: Path) -> None:
            with contextlib.suppress(ParentGone):
                self._send(Preview(job_id=job.job_id, path=str(path), step=step, total=total))

        # A name of its own: never taken for one of the segment's files (``<name>.*``).
        return PreviewWriter(Path(job.out_dir) / f"preview-{job.name}.png", steps, written)


def load_start_image(path: str, limits: LimitsConfig | None = None) -> Image.Image:
    """Decode an image file under the start-picture policy's safety rules (shared.pictures, the
    same code the chat and ``framechain render`` check with) into upright RGB; anything wrong
    with it is BadInput carrying the policy's sentence."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInput(f"image not found: {path}") from None
    except OSError as exc:
        raise BadInput(f"cannot read image {Path(path).name}: {exc.strerror}") from None
    try:
        return read_picture(data, limits)
    except PictureRefused as refusal:
        raise BadInput(refusal.reason) from None


def serve_forever(
    backend: Backend,
    *,
    device: str,
    stdin: IO[str],
    stdout: IO[str] | ProtocolOut,
    info: dict[str, object],
    limits: LimitsConfig | None = None,
    interpolator: TakeInterpolator | None = None,
) -> bool:
    """Serve until shutdown or EOF; returns False when it stopped because the parent is gone."""
    out = stdout if isinstance(stdout, ProtocolOut) else ProtocolOut(stdout)
    worker = Worker(backend, out, device=device, limits=limits, interpolator=interpolator)
    try:
        worker._send(Ready(backend=backend.name, device=device, preview=backend.preview, info=dict(info)))
    except ParentGone:
        return False
    reader = threading.Thread(target=worker.read_loop, args=(stdin,), name="stdin-reader", daemon=True)
    reader.start()
    worker.serve()
    return not worker.parent_gone
