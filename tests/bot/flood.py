"""A flood through the real Telegram front end: many users send many messages within a second
or two (a /start with a picture, a prompt, then chatter: /status, /help, more prompts, settings,
emoji), a few of the pictures 40 megapixels. The real python-telegram-bot Application polls them
from the Bot API stand-in, in front of the real service, store, dispatcher and a preview worker.
The stand-in and the users' side run in a process of their own, as Telegram's servers would.

Measured: event-loop lag (a 5 ms ticker, as in bench/bench_bot.py), how many messages got an
answer (each message here is one the bot answers), jobs queued at once per user and in all
(sampled from the store), and the process's RSS before and after. Used by
tests/bot/test_reliability_flood.py (small) and bench/reliability.py (1,000 messages, 50 users).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import sqlite3
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bot.telegram_adapter import RetryPolicy, build_telegram
from shared.config import Config, load_config
from tests.bot.hostile_runner import bot_process
from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.telegram_standin import BotApiStandIn

FIRST_USER = 5000
#: The service's default: progress messages edited at most every 3 s.
PROGRESS_INTERVAL = 3.0
CHATTER = ("/status", "/help", "one more prompt, please", "/settings steps=2", "🦊🦊 are you there?")


@dataclass
class FloodFigures:
    users: int
    messages: int
    big_pictures: int
    big_picture_mb: float
    seconds_to_send: float
    seconds_to_answer_all: float
    answered: int
    unanswered: int
    apologies: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    max_jobs_per_user: int
    max_jobs_in_all: int
    queued_jobs_per_user_quota: int
    rss_before_mb: float
    rss_after_mb: float
    rss_peak_mb: float


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * 4096 / 1024 / 1024


def peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def big_picture(megapixels: float = 40.0) -> bytes:
    """A ``megapixels`` PNG (a 3:2 photo's shape) that compresses well: a smooth gradient."""
    width = int((megapixels * 1e6 * 1.5) ** 0.5) // 16 * 16
    height = int(megapixels * 1e6 / width)
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = x
    rgb[..., 1] = y
    rgb[..., 2] = 128
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


async def measure_lag(stop: asyncio.Event, lags: list[float], tick: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(tick)
        lags.append((loop.time() - start - tick) * 1000)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def jobs_now(config: Config) -> Counter[str]:
    with contextlib.closing(sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute(
            "SELECT s.owner_id FROM segments g JOIN sessions s ON s.id = g.session_id"
            " WHERE g.status IN ('queued', 'running')"
        ).fetchall()
    return Counter(str(r[0]) for r in rows)


@dataclass(frozen=True)
class _Answers:
    """What the users' side saw, sent back from the stand-in's process."""

    messages: int
    big_picture_mb: float
    seconds_to_send: float
    seconds_to_answer_all: float
    answered: int
    unanswered: int
    apologies: int


def _users_side(conn: Connection, users: int, per_user: int, big: int, timeout: float) -> None:
    """The child process: the Bot API stand-in and the users sending through it, on a loop (and
    a GIL) of their own, so that what is measured on the bot's loop is the bot's work alone."""
    asyncio.run(_serve_and_send(conn, users, per_user, big, timeout))


async def _serve_and_send(conn: Connection, users: int, per_user: int, big: int, timeout: float) -> None:
    ids = list(range(FIRST_USER, FIRST_USER + users))
    heavy = big_picture() if big else b""
    small = picture_bytes()
    async with BotApiStandIn() as api:
        conn.send((api.token, api.base_url, api.file_url))
        await asyncio.to_thread(conn.recv)  # the bot is polling: go
        began = time.monotonic()
        sent = 0
        for round_ in range(per_user):  # interleaved, as many people typing at once
            for n, user in enumerate(ids):
                if round_ == 0 and n < big:
                    await api.user_message(
                        user, user, document=heavy, file_name="camera.png", mime_type="image/png", caption="/start"
                    )
                elif round_ == 0:
                    await api.user_message(user, user, photo=small, caption="/start")
                elif round_ == 1:
                    await api.user_message(user, user, text=f"prompt from user {user}")
                else:
                    await api.user_message(user, user, text=CHATTER[(round_ + n) % len(CHATTER)])
                sent += 1
        sent_in = time.monotonic() - began

        def answers() -> Counter[int]:
            return Counter(c.params["chat_id"] for c in api.sent("sendMessage"))

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(answers()[u] < per_user for u in ids):
            await asyncio.sleep(0.1)
        answered_in = time.monotonic() - began
        counts = answers()
        texts = [c.params["text"] for c in api.sent("sendMessage")]
        conn.send(
            _Answers(
                messages=sent,
                big_picture_mb=len(heavy) / 1024 / 1024,
                seconds_to_send=sent_in,
                seconds_to_answer_all=answered_in,
                answered=sum(min(counts[u], per_user) for u in ids),
                unanswered=sum(max(0, per_user - counts[u]) for u in ids),
                apologies=sum("something went wrong" in t.lower() for t in texts),
            )
        )
        await asyncio.to_thread(conn.recv)  # the bot has stopped: the server may go


async def flood(
    tmp_path: Path, *, users: int = 50, per_user: int = 20, big: int = 4, timeout: float = 300
) -> FloodFigures:
    """``users`` users send ``per_user`` messages each, all at once; ``big`` of them start with a
    40-megapixel picture (sent as a file, as Telegram keeps it whole only then).

    The stand-in and the users run in a child process: in the bot's own loop, the server's
    parsing and answering of ~1,250 requests (and the making of the big picture) would be
    counted as the bot's lag and RSS."""
    ids = list(range(FIRST_USER, FIRST_USER + users))
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    side = multiprocessing.get_context("spawn").Process(
        target=_users_side, args=(theirs, users, per_user, big, timeout), name="flood users", daemon=True
    )
    side.start()
    reported = False
    try:
        token, base_url, file_url = await _receive(ours, side, 120)
        path = write_config(tmp_path, step_delay=0.2, size=64)
        with path.open("a") as fh:
            fh.write(
                f'[telegram]\ntoken = "{token}"\napi_base_url = "{base_url}"\n'
                f'api_file_url = "{file_url}"\nallowed_user_ids = {ids}\n'
            )
        config = load_config(path, env={})
        config.data_dir.mkdir(parents=True, exist_ok=True)
        # Progress messages edited as often as a deployed bot edits them (the corpus edits at once).
        async with bot_process(config, path, progress_interval=PROGRESS_INTERVAL) as bot:
            front = build_telegram(
                config, bot.service, retry=RetryPolicy(attempts=4, base_delay=0.01), poll_timeout=2, paste_wait=0.1
            )
            bot.service.add_port(front.port)
            await front.start()
            try:
                reset_peak_rss()
                rss_before = rss_mb()
                lags: list[float] = []
                stop = asyncio.Event()
                ticker = asyncio.create_task(measure_lag(stop, lags))
                peaks = {"user": 0, "all": 0}

                async def sample() -> None:
                    while not stop.is_set():
                        counts = await asyncio.to_thread(jobs_now, config)
                        peaks["user"] = max(peaks["user"], max(counts.values(), default=0))
                        peaks["all"] = max(peaks["all"], sum(counts.values()))
                        await asyncio.sleep(0.2)

                sampler = asyncio.create_task(sample())
                ours.send("go")
                seen: _Answers = await _receive(ours, side, timeout + 60)
                reported = True
                stop.set()
                await ticker
                await sampler
                return FloodFigures(
                    users=users,
                    messages=seen.messages,
                    big_pictures=big,
                    big_picture_mb=seen.big_picture_mb,
                    seconds_to_send=seen.seconds_to_send,
                    seconds_to_answer_all=seen.seconds_to_answer_all,
                    answered=seen.answered,
                    unanswered=seen.unanswered,
                    apologies=seen.apologies,
                    lag_p50_ms=statistics.median(lags),
                    lag_p99_ms=percentile(lags, 0.99),
                    lag_max_ms=max(lags),
                    max_jobs_per_user=peaks["user"],
                    max_jobs_in_all=peaks["all"],
                    queued_jobs_per_user_quota=config.limits.queued_jobs_per_user,
                    rss_before_mb=rss_before,
                    rss_after_mb=rss_mb(),
                    rss_peak_mb=peak_rss_mb(),
                )
            finally:
                await front.stop()
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")  # after the answers: the server may go; before them it is killed
        await asyncio.to_thread(side.join, 30 if reported else 0.5)
        if side.is_alive():
            side.kill()
        ours.close()


async def _receive(conn: Connection, side: BaseProcess, timeout: float) -> Any:
    """The child's next message, waited for in a thread; fails if the child died or was slow."""
    if not await asyncio.to_thread(conn.poll, timeout):
        raise AssertionError(f"the flood's users process sent nothing in {timeout:.0f} s (alive: {side.is_alive()})")
    return conn.recv()
