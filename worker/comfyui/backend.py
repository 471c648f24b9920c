"""The ComfyUI backend: renders each segment on one ComfyUI server, returns its frames losslessly.

One worker process per server (slot ``comfyui:N``). At start it reaches the server, reads
``/object_info`` and checks the graph it will send (the reference graph, or the user's workflow and
mapping): every node class, input and model file, so a server that cannot run it is refused now,
with the missing pieces named, rather than at the first job. Then one websocket stays open.

Per job: upload the prepared start image, submit the prompt, follow our ``prompt_id``'s
``progress`` / ``executing`` / ``execution_*`` messages (``/history`` polling while the websocket is
down), then fetch the output PNGs through ``/view``. Cancel: ``/interrupt`` when our prompt is
running, removal from ``/queue`` while it waits. A server that stops answering mid-job raises
``ServerLost``, which ends the worker: the dispatcher then retries the job on another slot.

The worker calls ``generate`` on its main thread; the HTTP and websocket work runs on an event
loop in a thread of its own, which also keeps the websocket alive between jobs.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from shared.config import ComfyUIConfig, ComfyUIServerConfig, GenerationConfig
from worker.backend import PreviewCallback, SegmentFrames, StepCallback, WaitCallback, check_inputs
from worker.comfyui.client import ComfyClient, parse_headers
from worker.comfyui.errors import ServerLost, ServerUnavailable
from worker.comfyui.graph import (
    PLACEHOLDER_IMAGE,
    Graph,
    JobValues,
    MappingError,
    ModelFiles,
    Prompt,
    check_mapping,
    load_workflow,
    mapped_graph,
    model_files,
    reference_graph,
)
from worker.comfyui.object_info import check_graph, image_inputs
from worker.errors import BadInput, Cancelled, GenerationError, OutOfMemory
from worker.images import prepare_start_image

log = logging.getLogger("framechain.worker.comfyui")

T = TypeVar("T")

#: Seconds to wait for the server to confirm an interrupt before reporting the cancel anyway.
INTERRUPT_WAIT = 30.0
#: How many of our latest jobs on a server time the estimate of a wait there.
TIMED_JOBS = 5
#: What the user is told the job waits on.
WHERE = "the ComfyUI server"


@dataclass(frozen=True)
class ComfyUIOptions:
    server: ComfyUIServerConfig
    models: ModelFiles
    shift: float = 8.0
    frames_output: str = "PreviewImage"
    #: The user's API-format workflow and mapping; None = the reference graph.
    workflow: Graph | None = None
    mapping: Any = None
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    job_timeout: float = 3600.0
    server_lost_after: float = 30.0
    poll_interval: float = 1.0


def options_from_config(generation: GenerationConfig, comfyui: ComfyUIConfig, device: str) -> ComfyUIOptions:
    """The options of slot ``comfyui:N`` (``N`` indexes the configured servers)."""
    servers = comfyui.server_list
    _, _, number = device.partition(":")
    index = int(number) if number.isdigit() else 0
    if not 0 <= index < len(servers):
        raise BadInput(f"{device}: there is no ComfyUI server number {index} (configured: {len(servers)})")
    workflow = None
    if comfyui.workflow is not None:
        try:
            workflow = load_workflow(comfyui.workflow)
        except MappingError as exc:
            raise BadInput(str(exc)) from None
        problems = check_mapping(workflow, comfyui.mapping)
        if problems:
            raise BadInput(f"comfyui.mapping does not fit {comfyui.workflow.name}: " + "; ".join(problems))
    return ComfyUIOptions(
        server=servers[index],
        models=model_files(comfyui, generation),
        shift=generation.shift,
        frames_output=comfyui.frames_output,
        workflow=workflow,
        mapping=comfyui.mapping,
        connect_timeout=comfyui.connect_timeout,
        request_timeout=comfyui.request_timeout,
        job_timeout=comfyui.job_timeout,
        server_lost_after=comfyui.server_lost_after,
        poll_interval=comfyui.poll_interval,
    )


def is_out_of_memory(error: dict[str, Any]) -> bool:
    kind = str(error.get("exception_type", ""))
    message = str(error.get("exception_message", "")).lower()
    return "OutOfMemory" in kind or "out of memory" in message or "allocation on device" in message


class ComfyUIBackend:
    name = "comfyui"
    preview = False

    def __init__(self, options: ComfyUIOptions) -> None:
        self.options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="comfyui-loop", daemon=True)
        self._thread.start()
        self.client: ComfyClient = self._run(self._make_client())
        self.version = ""
        #: Seconds our latest jobs ran on this server, once started there (for wait estimates).
        self.job_seconds: deque[float] = deque(maxlen=TIMED_JOBS)
        try:
            self._run(self._connect())
        except BaseException:
            self.close()
            raise

    # --- plumbing ------------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _make_client(self) -> ComfyClient:
        o = self.options
        return ComfyClient(
            o.server.url,
            client_id=uuid.uuid4().hex,
            headers=parse_headers(o.server.headers),
            connect_timeout=o.connect_timeout,
            request_timeout=o.request_timeout,
        )

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self.client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def describe(self) -> dict[str, Any]:
        graph = "workflow (mapped)" if self.options.workflow is not None else "reference graph"
        return {"server": self.client.name, "comfyui_version": self.version, "graph": graph}

    # --- start: reach the server and check the graph ------------------------------------------

    def _prompt(self, job: JobValues) -> Prompt:
        o = self.options
        if o.workflow is not None:
            return mapped_graph(o.workflow, o.mapping, job)
        return reference_graph(job, o.models, shift=o.shift, frames_output=o.frames_output)

    async def _connect(self) -> None:
        stats = await self.client.system_stats()
        self.version = str((stats.get("system") or {}).get("comfyui_version", "")) or "unknown"
        info = await self.client.object_info()
        sample = JobValues(
            image=PLACEHOLDER_IMAGE, prompt="check", negative_prompt="", width=640, height=640,
            frames=81, steps=20, guidance=3.5, guidance_2=3.5, seed=0,
        )  # fmt: skip
        graph = self._prompt(sample).graph
        problems = check_graph(graph, info, skip_values=image_inputs(graph, info))
        if problems:
            raise BadInput(f"ComfyUI at {self.client.name} cannot run the graph: " + "; ".join(problems))
        self.client.start_websocket()
        log.info("ComfyUI %s at %s: the graph's nodes and model files are all there", self.version, self.client.name)

    # --- one segment ----------------------------------------------------------------------------

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
        on_preview: PreviewCallback | None = None,  # never called: the server's latents stay there
    ) -> SegmentFrames:
        check_inputs(
            image=image, prompt=prompt, width=width, height=height, frames=frames,
            steps=steps, guidance=guidance, guidance_2=guidance_2, seed=seed, end_image=end_image,
        )  # fmt: skip
        if end_image is not None:
            # The reference graph (WanImageToVideo) and mapped workflows have no end-frame input.
            raise BadInput(
                "the comfyui backend does not take end keyframes (/end); clear it with /end clear, "
                "or use the wan backend"
            )
        if seed is None:
            seed = secrets.randbelow(2**31)
        start = prepare_start_image(image, width, height)
        buffer = io.BytesIO()
        start.save(buffer, format="PNG")
        job = JobValues(
            image="", prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
            frames=frames, steps=steps, guidance=guidance, guidance_2=guidance_2, seed=seed,
        )  # fmt: skip
        frames_out = self._run(_Job(self, job, buffer.getvalue(), on_step, on_wait).run())
        return SegmentFrames(frames=frames_out, seed=seed)


class _Job:
    """Follows one prompt on the server, on the backend's event loop."""

    def __init__(
        self,
        backend: ComfyUIBackend,
        job: JobValues,
        png: bytes,
        on_step: StepCallback | None,
        on_wait: WaitCallback | None,
    ) -> None:
        self.backend = backend
        self.client = backend.client
        self.options = backend.options
        self.job = job
        self.png = png
        self.on_step = on_step
        self.on_wait = on_wait
        self.prompt_id = ""
        #: Jobs ahead of ours in the server's queue (others' jobs), until ours runs there.
        self.ahead = 0
        #: When our prompt began to run on the server (None while it waits).
        self.running_since: float | None = None
        self.step = 0
        self.node_progress: dict[str, tuple[int, int]] = {}
        self.unreachable_since: float | None = None

    async def run(self) -> np.ndarray:
        try:
            return await self._run()
        except ServerLost:
            raise
        except ServerUnavailable as exc:
            # Whenever in a job the server cannot be reached, the job belongs on another slot.
            raise ServerLost(str(exc)) from exc

    async def _run(self) -> np.ndarray:
        o = self.options
        name = await self.client.upload_image(self.png, f"framechain-{uuid.uuid4().hex[:12]}.png")
        prompt = self.backend._prompt(_with_image(self.job, name))
        self.progress_nodes = set(prompt.progress_nodes)
        while not self.client.events.empty():  # messages of earlier jobs
            self.client.events.get_nowait()
        # Connected before submitting, so no message of ours is missed.
        try:
            await asyncio.wait_for(self.client.ws_connected.wait(), o.connect_timeout)
        except TimeoutError:
            log.warning("no websocket to %s; following the job through /history", self.client.name)
        generation = self.client.ws_generation if self.client.ws_connected.is_set() else -1
        self.prompt_id = await self.client.submit(prompt.graph)
        log.info("prompt %s queued on %s", self.prompt_id, self.client.name)
        await self._look_at_queue()
        deadline = time.monotonic() + o.job_timeout
        while True:
            if time.monotonic() > deadline:
                await self._stop_on_server()
                raise GenerationError(f"the job took longer than comfyui.job_timeout ({o.job_timeout:.0f} s)")
            try:
                event = await asyncio.wait_for(self.client.events.get(), o.poll_interval)
            except TimeoutError:
                event = None
            if event is not None:
                if await self._handle(event):
                    break
                continue
            # A quiet moment: ask whether to stop, and poll if the websocket missed anything.
            await self._report()
            if generation != self.client.ws_generation or not self.client.ws_connected.is_set():
                generation = -1  # stays in polling mode for the rest of this job
                if await self._poll():
                    break
        if self.running_since is not None:
            self.backend.job_seconds.append(time.monotonic() - self.running_since)
        return await self._fetch_frames(prompt.output)

    async def _report(self) -> None:
        """Tell the worker where the job is (it writes only changes); stop if it asks to."""
        if self.running_since is None and self.ahead > 0 and self.on_wait is not None:
            stop = self.on_wait(self.ahead, WHERE, self._eta())
        else:
            stop = self.on_step is not None and self.on_step(self.step, self.job.steps)
        if stop:
            await self._cancel()

    def _eta(self) -> float | None:
        """Seconds until ours starts, if each job ahead takes as long as ours have here."""
        timed = self.backend.job_seconds
        return self.ahead * sum(timed) / len(timed) if timed else None

    def _started(self) -> None:
        if self.running_since is None:
            self.running_since = time.monotonic()
            self.ahead = 0

    def _place(self, running: list[str], pending: list[str]) -> None:
        """Our place from the server's queue: running, or behind how many jobs."""
        if self.prompt_id in running:
            self._started()
        elif self.prompt_id in pending and self.running_since is None:
            self.ahead = len(running) + pending.index(self.prompt_id)

    async def _look_at_queue(self) -> None:
        """The queue changed (or we just joined it): report our place while we wait."""
        running, pending = await self.client.queue()
        self._place(running, pending)
        if self.running_since is None:
            log.info("prompt %s waits on %s behind %d job(s)", self.prompt_id, self.client.name, self.ahead)
            await self._report()

    async def _handle(self, event: dict[str, Any]) -> bool:
        """Apply one websocket message; True once our prompt has finished well."""
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "status" and self.running_since is None:
            await self._look_at_queue()  # sent on every change of the server's queue
            return False
        if not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return False
        self._started()
        if kind == "progress":
            node = str(data.get("node"))
            if not self.progress_nodes or node in self.progress_nodes:
                self.node_progress[node] = (int(data.get("value", 0)), int(data.get("max", 0)))
                self.step = min(self.job.steps, sum(v for v, _ in self.node_progress.values()))
                await self._report()
        elif kind == "execution_error":
            raise _execution_error(data)
        elif kind == "execution_interrupted":
            raise GenerationError(f"the job was interrupted on {self.client.name} (by someone else)")
        elif kind == "executing" and data.get("node") is None:
            return await self._poll(final=True)
        return False

    async def _poll(self, *, final: bool = False) -> bool:
        """Look the prompt up in /history (and /queue); True once it has finished well."""
        try:
            entry = await self.client.history(self.prompt_id)
            running, pending = ([], []) if entry is not None else await self.client.queue()
        except ServerUnavailable as exc:
            now = time.monotonic()
            self.unreachable_since = self.unreachable_since or now
            if now - self.unreachable_since > self.options.server_lost_after:
                raise ServerLost(f"{self.client.name} stopped answering during the job ({exc})") from exc
            return False
        self.unreachable_since = None
        if entry is not None:
            status = entry.get("status") or {}
            if status.get("status_str") == "error" or status.get("completed") is False:
                for kind, data in status.get("messages", []):
                    if kind == "execution_error":
                        raise _execution_error(data)
                    if kind == "execution_interrupted":
                        raise GenerationError(f"the job was interrupted on {self.client.name}")
                raise GenerationError(f"{self.client.name} reports the job failed")
            return True
        if self.prompt_id in running or self.prompt_id in pending:
            self._place(running, pending)
            return False
        if final:
            return False  # history is written a moment after the last message
        raise ServerLost(f"{self.client.name} no longer knows the job (restarted?)")

    async def _stop_on_server(self) -> None:
        """Remove our prompt from the server's queue, or interrupt it; True if it was running."""
        running, pending = await self.client.queue()
        if self.prompt_id in pending:
            await self.client.delete_pending(self.prompt_id)
        elif self.prompt_id in running:
            await self.client.interrupt(self.prompt_id)
            end = time.monotonic() + INTERRUPT_WAIT
            while time.monotonic() < end:
                running, _ = await self.client.queue()
                if self.prompt_id not in running:
                    break
                await asyncio.sleep(min(0.2, self.options.poll_interval))

    async def _cancel(self) -> None:
        running, pending = await self.client.queue()
        where = "while waiting in the ComfyUI queue" if self.prompt_id in pending else "on the ComfyUI server"
        if self.prompt_id in running or self.prompt_id in pending:
            await self._stop_on_server()
        raise Cancelled(f"cancelled {where}")

    async def _fetch_frames(self, output: str) -> np.ndarray:
        entry = await self.client.history(self.prompt_id)
        for _ in range(20):  # the history entry follows the last message closely
            if entry is not None:
                break
            await asyncio.sleep(0.1)
            entry = await self.client.history(self.prompt_id)
        images = ((entry or {}).get("outputs") or {}).get(output, {}).get("images", [])
        if not images:
            raise GenerationError(f"node {output} of the graph returned no images on {self.client.name}")
        frames = []
        for item in images:
            data = await self.client.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
            with Image.open(io.BytesIO(data)) as img:
                frames.append(np.asarray(img.convert("RGB")))
        if len({f.shape for f in frames}) != 1:
            raise GenerationError("the server returned frames of different sizes")
        stack = np.stack(frames)
        if stack.shape[0] != self.job.frames or stack.shape[1:3] != (self.job.height, self.job.width):
            log.warning(
                "asked for %d frames of %dx%d, the server returned %d of %dx%d",
                self.job.frames, self.job.width, self.job.height, stack.shape[0], stack.shape[2], stack.shape[1],
            )  # fmt: skip
        return stack


def _with_image(job: JobValues, name: str) -> JobValues:
    return JobValues(**{**job.__dict__, "image": name})


def _execution_error(data: dict[str, Any]) -> GenerationError:
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    message = str(data.get("exception_message", "")).strip().splitlines()
    text = f"ComfyUI {where}: {data.get('exception_type', 'error')}: {message[0] if message else ''}".rstrip(": ")
    return OutOfMemory(text) if is_out_of_memory(data) else GenerationError(text)


def build_comfyui_backend(
    generation: GenerationConfig, comfyui: ComfyUIConfig, device: str
) -> tuple[ComfyUIBackend, dict[str, Any]]:
    backend = ComfyUIBackend(options_from_config(generation, comfyui, device))
    return backend, backend.describe()
