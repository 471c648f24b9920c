"""The bot's side of one worker process: start it, send jobs, follow its events, notice its death.

Used by ``framechain render`` and by the dispatcher. Only asyncio and the protocol module: the
bot process never imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from shared.protocol import Cancel as CancelMessage
from shared.protocol import (
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

log = logging.getLogger("framechain.worker_client")

ProgressHandler = Callable[[Progress], Awaitable[None] | None]
#: Called while the job waits in the queue of what the worker's backend drives (a ComfyUI server).
QueuedHandler = Callable[[Queued], Awaitable[None] | None]
#: Called with each live preview of the running job (a picture in the job's out_dir).
PreviewHandler = Callable[[Preview], Awaitable[None] | None]

#: A worker loading a 14B model from a slow disk can take minutes before `ready`.
DEFAULT_START_TIMEOUT = 900.0


class WorkerError(Exception):
    """The worker process could not be used."""


class WorkerStartError(WorkerError):
    """The worker exited or reported a failure before it was ready. ``kind`` is the failure kind
    the worker reported (None when it just exited or timed out)."""

    def __init__(self, message: str, kind: FailureKind | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class WorkerDied(WorkerError):
    """The worker process ended while a job was running."""


def worker_command(
    *,
    device: str,
    backend: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
    model: str | None = None,
    log_level: str | None = None,
) -> list[str]:
    cmd = [sys.executable, "-m", "worker", "--device", device]
    if backend:
        cmd += ["--backend", backend]
    if config_path:
        cmd += ["--config", str(config_path)]
    if model:
        cmd += ["--model", model]
    if log_level:
        cmd += ["--log-level", log_level]
    return cmd


class WorkerProcess:
    def __init__(self, command: Sequence[str], *, name: str = "worker", env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.name = name
        self.env = env
        self.ready: Ready | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Message | None] = asyncio.Queue()
        self._job: str | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> Ready:
        # The worker package lives beside bot/, so make it importable whatever the cwd.
        env = dict(os.environ if self.env is None else self.env)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-reader")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self._events.get()
                    if event is None:
                        code = await self._proc.wait()
                        raise WorkerStartError(f"{self.name} exited with status {code} before it was ready")
                    if isinstance(event, Ready):
                        self.ready = event
                        log.info("%s ready: %s on %s", self.name, event.backend, event.device)
                        return event
                    if isinstance(event, Failed):
                        await self.kill()
                        raise WorkerStartError(f"{self.name}: {event.message}", kind=event.kind)
        except TimeoutError:
            await self.kill()
            raise WorkerStartError(f"{self.name} was not ready after {timeout:.0f} s") from None

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                try:
                    message = decode(line)
                except ProtocolError as exc:
                    log.warning("%s wrote a malformed line (%s): %r", self.name, exc, line[:200])
                    continue
                await self._events.put(message)
        finally:
            await self._events.put(None)

    async def _send(self, message: Message) -> None:
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise WorkerDied(f"{self.name} is not running")
        try:
            self._proc.stdin.write(encode(message).encode())
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerDied(f"{self.name} is not running") from exc

    async def run(
        self,
        job: Generate,
        on_progress: ProgressHandler | None = None,
        on_queued: QueuedHandler | None = None,
        *,
        on_preview: PreviewHandler | None = None,
    ) -> Done | Failed:
        """Send one job and wait for its ``done`` or ``failed``. Raises WorkerDied if the process ends."""
        async with self._lock:
            self._job = job.job_id
            try:
                await self._send(job)
                while True:
                    event = await self._events.get()
                    if event is None:
                        code = await self._proc.wait() if self._proc else None
                        raise WorkerDied(f"{self.name} exited with status {code} during job {job.job_id}")
                    if isinstance(event, Progress) and event.job_id == job.job_id:
                        if on_progress is not None:
                            result = on_progress(event)
                            if result is not None:
                                await result
                    elif isinstance(event, Queued) and event.job_id == job.job_id:
                        if on_queued is not None:
                            result = on_queued(event)
                            if result is not None:
                                await result
                    elif isinstance(event, Preview) and event.job_id == job.job_id:
                        if on_preview is not None:
                            result = on_preview(event)
                            if result is not None:
                                await result
                    elif isinstance(event, (Done, Failed)) and event.job_id == job.job_id:
                        return event
                    elif isinstance(event, Failed):
                        log.warning("%s: %s", self.name, event.message)
            finally:
                self._job = None

    async def cancel(self, job_id: str) -> None:
        with contextlib.suppress(WorkerDied):
            await self._send(CancelMessage(job_id=job_id))

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to finish; kill it if it does not within ``timeout``."""
        if self._proc is None:
            return
        if self.alive:
            with contextlib.suppress(WorkerDied):
                await self._send(Shutdown())
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                async with asyncio.timeout(timeout):
                    await self._proc.wait()
            except TimeoutError:
                log.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
        await self.kill()

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
