"""bootstrap: builds the store, the service, the dispatcher and the chat front ends, runs them
until stopped, then shuts down in the order that loses nothing: stop taking input, stop the
running generation (re-queued on the next start), let a join in progress finish and its video be
posted (bounded), and only then close the platforms. No module globals: everything is made here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from bot.access import access_rules
from bot.disk import StartupProblem, writable_problem
from bot.dispatcher import Dispatcher
from bot.ports import ChatPort, Conversation
from bot.retention import keep_pruning
from bot.service import ConversationService
from bot.store import Store
from bot.worker_client import WorkerProcess, worker_command
from shared.config import Config

log = logging.getLogger("framechain")

#: Seconds between attempts to reach a chat platform that is down at start-up, doubled up to 5 min.
RECONNECT_DELAY = 5.0
#: Seconds a shutdown waits for a join in progress and the posts that follow it; a join cut off
#: is redone on the next start. Under systemd's default stop timeout (90 s).
SHUTDOWN_WAIT = 45.0


@runtime_checkable
class Observing(Protocol):
    """A front end that also shows the queue and the store (the web operator page)."""

    def observe(self, store: Store, dispatcher: Dispatcher | None) -> None: ...


class FrontEnd(Protocol):
    @property
    def port(self) -> ChatPort: ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


#: Builds the front ends that talk to the platforms (tests pass their own).
FrontEndFactory = Callable[[Config, Conversation], list[FrontEnd]]


def build_front_ends(config: Config, conversation: Conversation) -> list[FrontEnd]:
    front_ends: list[FrontEnd] = []
    if config.telegram.token:
        from bot.telegram_adapter import build_telegram

        front_ends.append(build_telegram(config, conversation))
    if config.discord.token:
        from bot.discord_adapter import build_discord

        front_ends.append(build_discord(config, conversation))
    if config.web.listen:
        from bot.web import build_web

        front_ends.append(build_web(config, conversation))
    return front_ends


def worker_factory(config_path: str | Path | None, log_level: str | None = None) -> Callable[[str], WorkerProcess]:
    def make(device: str) -> WorkerProcess:
        command = worker_command(device=device, config_path=config_path, log_level=log_level)
        return WorkerProcess(command, name=f"worker-{device}")

    return make


async def _keep_started(front: FrontEnd, stop: asyncio.Event) -> None:
    """Start a front end, retrying with backoff while its platform cannot be reached."""
    delay = RECONNECT_DELAY
    name = front.port.platform
    while not stop.is_set():
        try:
            await front.start()
            log.info("%s connected", name)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s could not start (%s); retrying in %.0f s", name, exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 300.0)


async def _first_of(*waits: Awaitable[object], timeout: float) -> None:
    """Wait until the first of ``waits`` completes, or ``timeout``; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()


async def serve(
    config: Config,
    stop: asyncio.Event,
    *,
    config_path: str | Path | None = None,
    front_ends_for: FrontEndFactory = build_front_ends,
    shutdown_wait: float = SHUTDOWN_WAIT,
) -> None:
    """Run until ``stop`` is set (SIGINT/SIGTERM). A data folder that cannot be written raises
    :class:`StartupProblem`, a database that cannot be used ``StoreError``, each saying why."""
    for rule in access_rules(config):
        # Said plainly at every start: who can use this GPU (an open bot is worth a warning).
        (log.warning if rule.open else log.info)("who can use the bot: %s", rule.summary())
    for folder in {config.data_dir, config.database_path.parent}:
        problem = writable_problem(folder)
        if problem:
            raise StartupProblem(problem)
    async with Store.open(config.database_path) as store:
        log.info("store open: %s (schema %d)", store.path, store.schema_version)
        service = ConversationService(store, config)
        dispatcher = Dispatcher(
            config.worker_slots,
            worker_factory(config_path, config.log_level),
            service,
            restart_backoff=config.workers.restart_backoff,
        )
        service.attach(dispatcher)
        front_ends = front_ends_for(config, service)
        for front in front_ends:
            service.add_port(front.port)
            if isinstance(front, Observing):
                front.observe(store, dispatcher)
        starting = [asyncio.create_task(_keep_started(front, stop)) for front in front_ends]
        try:
            # Posting what a crash left unposted needs the platforms: give them a moment first.
            if starting:
                await _first_of(asyncio.wait(starting), stop.wait(), timeout=60)
            if stop.is_set():
                return
            await service.resume()
            service.keep_posting()
            pruning = asyncio.create_task(keep_pruning(store, config, service.locks.hold), name="prune")
            starting.append(pruning)  # cancelled with the rest on the way out
            await dispatcher.start()
            await stop.wait()
            log.info("shutting down")
        finally:
            for task in starting:
                task.cancel()
            service.stop_input()
            await dispatcher.stop()  # a job cut off stays running in the store: re-queued on start
            await service.drain(shutdown_wait)
            for front in reversed(front_ends):
                with contextlib.suppress(Exception):
                    await front.stop()
            await service.close()
