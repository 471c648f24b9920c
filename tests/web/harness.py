"""``framechain run``'s own bootstrap (bot.app.serve) with only the web front end, on the
preview backend, on a free loopback port: what `make demo` runs, in the test's event loop so the
browser and the server can be driven together, stopped and started again on the same data."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import serve
from shared.config import Config, load_config
from tests.bot.service_harness import write_config

#: Seconds per preview step: slow enough to watch the progress message change.
STEP_DELAY = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_config(
    tmp_path: Path, *, tokens: str = "", operator: bool = True, step_delay: float = STEP_DELAY, steps: int = 8
) -> Path:
    port = free_port()
    web = f'\n[web]\nlisten = "127.0.0.1:{port}"\noperator_page = {"true" if operator else "false"}\n{tokens}\n'
    return write_config(tmp_path, step_delay=step_delay, size=64, steps=steps, extra=web)


@dataclass
class WebBot:
    config_path: Path
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def config(self) -> Config:
        return load_config(self.config_path, env={})

    @property
    def url(self) -> str:
        host, port = self.config.web.host_port
        return f"http://{host}:{port}/"

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(serve(config, self.stop, config_path=self.config_path, shutdown_wait=5.0))
        async with aiohttp.ClientSession() as client:
            for _ in range(200):
                if self.task.done():
                    self.task.result()
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(self.url + "static/style.css") as response:
                        if response.status in (200, 401):
                            return
                await asyncio.sleep(0.05)
        raise TimeoutError("the web server did not come up")

    async def shutdown(self) -> None:
        if self.task is not None:
            self.stop.set()
            await asyncio.wait_for(self.task, 30)
            self.task = None


@contextlib.asynccontextmanager
async def web_bot(config_path: Path) -> AsyncIterator[WebBot]:
    bot = WebBot(config_path)
    await bot.start()
    try:
        yield bot
    finally:
        await bot.shutdown()


class Client:
    """What the page does, over HTTP and the websocket, for tests that set a scene quickly."""

    def __init__(self, bot: WebBot, session: aiohttp.ClientSession) -> None:
        self.bot = bot
        self.session = session

    async def new_thread(self) -> str:
        async with self.session.post(self.bot.url + "api/threads", headers={"X-Framechain": "1"}) as response:
            response.raise_for_status()
            return str((await response.json())["thread"])

    async def send(self, thread: str, text: str, picture: bytes | None = None) -> list[str]:
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("thread", thread)
        form.add_field("text", text)
        if picture is not None:
            form.add_field("picture", picture, filename="start.png", content_type="image/png")
        async with self.session.post(self.bot.url + "api/send", data=form, headers={"X-Framechain": "1"}) as response:
            response.raise_for_status()
            return list((await response.json())["notes"])

    async def press(self, thread: str, data: str) -> list[str]:
        async with self.session.post(
            self.bot.url + "api/press", json={"thread": thread, "data": data}, headers={"X-Framechain": "1"}
        ) as response:
            response.raise_for_status()
            return list((await response.json())["notes"])

    async def history(self, thread: str) -> list[dict[str, Any]]:
        async with self.session.ws_connect(self.bot.url + "ws") as socket:
            await socket.send_json({"open": thread})
            while True:
                event = await socket.receive_json(timeout=10)
                if event["type"] == "history":
                    return list(event["messages"])

    async def control(self, thread: str, action: str, *, timeout: float = 30.0) -> str:
        """The newest button of ``action`` (``approve``, ``apfin``...) in the thread, once there."""
        for _ in range(int(timeout / 0.2)):
            for message in reversed(await self.history(thread)):
                for control in message["controls"]:
                    if control["data"].endswith(":" + action):
                        return str(control["data"])
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no {action} button in {thread}")
