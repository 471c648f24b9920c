"""Builds the real service, store and dispatcher with preview worker processes, for tests."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bot.disk import FreeSpace, free_bytes
from bot.dispatcher import Dispatcher
from bot.service import ConversationService
from bot.store import Store
from bot.worker_client import WorkerProcess, worker_command
from shared.config import Config, load_config
from tests.bot.fake_chat import FakeChat


def write_config(
    tmp_path: Path,
    *,
    devices: tuple[str, ...] = ("cpu",),
    step_delay: float = 0.0,
    size: int = 64,
    extra: str = "",
    backend: str = "preview",
    model: str | Path | None = None,
    frames: int = 33,
    steps: int = 4,
) -> Path:
    """A config for the service tests. ``backend="wan"`` with ``model`` (a tiny Wan folder) runs
    the real Wan pipeline in the workers."""
    path = tmp_path / "framechain.toml"
    device_list = ", ".join(f'"{d}"' for d in devices)
    model_line = f'model = "{model}"\n' if model is not None else ""
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[generation]\n"
        f'backend = "{backend}"\nwidth = {size}\nheight = {size}\nframes = {frames}\nsteps = {steps}\n'
        f"{model_line}preview_step_delay = {step_delay}\n{extra}\n"
        f"[workers]\ndevices = [{device_list}]\nrestart_backoff = 0.05\n"
    )
    return path


def picture_bytes(width: int = 96, height: int = 96, fmt: str = "PNG", *, grain: int = 0) -> bytes:
    """A gradient picture; ``grain`` adds noise of that amplitude (bigger videos)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1)
    if grain:
        rgb = rgb + np.random.default_rng(0).integers(-grain, grain + 1, rgb.shape)
    rgb = rgb.clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass
class Bot:
    config: Config
    store: Store
    service: ConversationService
    dispatcher: Dispatcher
    chat: FakeChat


@asynccontextmanager
async def running_bot(
    config_path: Path,
    *,
    chat: FakeChat | None = None,
    wall_clock: Callable[[], float] = time.time,
    free_space: FreeSpace = free_bytes,
) -> AsyncIterator[Bot]:
    """``wall_clock``: the service's clock for the quota day (epoch seconds); ``free_space``: the
    data folder's free bytes (a test makes the disk look full)."""
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    chat = chat or FakeChat()
    async with Store.open(config.database_path) as store:
        service = ConversationService(
            store, config, progress_interval=0.0, wall_clock=wall_clock, free_space=free_space
        )
        service.add_port(chat)

        def make_worker(device: str) -> WorkerProcess:
            return WorkerProcess(worker_command(device=device, config_path=config_path), name=f"worker-{device}")

        dispatcher = Dispatcher(
            config.worker_slots, make_worker, service, restart_backoff=config.workers.restart_backoff
        )
        service.attach(dispatcher)
        await service.resume()
        await dispatcher.start()
        try:
            yield Bot(config, store, service, dispatcher, chat)
        finally:
            await dispatcher.stop()
            await service.close()
