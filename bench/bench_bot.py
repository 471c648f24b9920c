"""The bot process under load: event-loop lag, prompt-to-acknowledgement time, memory.

A real service, store and dispatcher drive a preview worker process (slowed to a model's pace)
while many sessions chat at once through an in-process chat platform, or (``--telegram``) through
the real Telegram front end over HTTP against the Bot API stand-in, so the figure includes update
polling, the paste check and the sendMessage call. Prints figures; targets: loop lag p99 <= 20 ms,
prompt -> queue acknowledgement <= 100 ms, and no torch in the process.

    .venv/bin/python -m bench.bench_bot [--sessions 60] [--seconds 20] [--telegram]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.ports import ChatRef
from bot.telegram_adapter import RetryPolicy, build_telegram
from bot.telegram_adapter.front import TelegramFrontEnd
from shared.config import load_config
from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from tests.bot.telegram_standin import BotApiStandIn


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class TimedChat(FakeChat):
    """Notes when each "queued" acknowledgement is sent, per chat."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: dict[ChatRef, list[float]] = {}

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        if "queued" in text:
            self.acks.setdefault(chat, []).append(time.perf_counter())
        return await super().send_text(chat, text)


async def measure_lag(stop: asyncio.Event, lags: list[float], tick: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(tick)
        lags.append((loop.time() - start - tick) * 1000)


async def run(sessions: int, seconds: float, *, telegram: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), step_delay=0.2, size=64)
        chat = TimedChat()
        async with running_bot(config, chat=chat) as bot:
            if telegram:
                async with BotApiStandIn() as api:
                    front = await telegram_front(api, bot, config)
                    try:
                        figures = await chat_through_telegram(api, bot, sessions, seconds)
                    finally:
                        await front.stop()
            else:
                figures = await chat_in_process(bot, chat, sessions, seconds)
        elapsed, lags, ack_times, done = figures
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "through Telegram (real Application, Bot API stand-in over HTTP)" if telegram else "in process"
        print(f"sessions: {sessions} {where}, run: {elapsed:.1f} s, segments delivered meanwhile: {done}")
        print(
            f"event-loop lag: p50 {statistics.median(lags):.2f} ms, p99 {percentile(lags, 0.99):.2f} ms, "
            f"max {max(lags):.2f} ms over {len(lags)} ticks (target p99 <= 20 ms)"
        )
        print(
            f"prompt -> queue acknowledgement: p50 {statistics.median(ack_times):.1f} ms, "
            f"p99 {percentile(ack_times, 0.99):.1f} ms over {len(ack_times)} prompts (target <= 100 ms)"
        )
        heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        print(f"bot process peak RSS: {rss_mb:.0f} MB; heavy modules imported: {heavy or 'none'}")


Figures = tuple[float, list[float], list[float], int]


async def chat_in_process(bot: Bot, chat: TimedChat, sessions: int, seconds: float) -> Figures:
    svc = bot.service
    chats = [ChatRef("telegram", str(1000 + i), "") for i in range(sessions)]
    for i, ref in enumerate(chats):
        await svc.start(ref, str(i), picture_bytes(), None)
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(measure_lag(stop, lags))
    ack_times: list[float] = []

    async def user(i: int, ref: ChatRef) -> None:
        await asyncio.sleep(i * seconds / sessions / 2)
        before = len(chat.acks.get(ref, []))
        sent_at = time.perf_counter()
        await svc.text(ref, str(i), f"prompt from user {i}")
        acks = chat.acks.get(ref, [])
        if len(acks) > before:
            ack_times.append((acks[-1] - sent_at) * 1000)
        end = time.perf_counter() + seconds / 2
        while time.perf_counter() < end:  # chatter while waiting
            await svc.command(ref, str(i), "status")
            await asyncio.sleep(0.5)

    began = time.perf_counter()
    await asyncio.gather(*(user(i, ref) for i, ref in enumerate(chats)))
    stop.set()
    await ticker
    return time.perf_counter() - began, lags, ack_times, len(chat.of("segment"))


async def telegram_front(api: BotApiStandIn, bot: Bot, config_path: Path) -> TelegramFrontEnd:
    with config_path.open("a") as fh:
        fh.write(
            f'[telegram]\ntoken = "{api.token}"\napi_base_url = "{api.base_url}"\napi_file_url = "{api.file_url}"\n'
        )
    config = load_config(config_path, env={})
    front = build_telegram(config, bot.service, retry=RetryPolicy(attempts=3, base_delay=0.05), poll_timeout=5)
    bot.service.add_port(front.port)  # replaces the in-process chat
    await front.start()
    return front


async def chat_through_telegram(api: BotApiStandIn, bot: Bot, sessions: int, seconds: float) -> Figures:
    users = [1000 + i for i in range(sessions)]  # a private chat's id is its user's
    picture = picture_bytes()
    for user_id in users:
        await api.user_message(user_id, user_id, photo=picture, caption="/start")
    await api.wait_for("sendMessage", sessions, timeout=60)  # each asked for a prompt
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(measure_lag(stop, lags))
    ack_times: list[float] = []

    async def user(i: int, user_id: int) -> None:
        await asyncio.sleep(i * seconds / sessions / 2)
        sent_at = time.monotonic()
        await api.user_message(user_id, user_id, text=f"prompt from user {i}")
        (ack, *_) = await api.wait_for(
            "sendMessage", where=lambda c: c.params["chat_id"] == user_id and "queued" in c.params["text"]
        )
        ack_times.append((ack.at - sent_at) * 1000)
        end = time.monotonic() + seconds / 2
        while time.monotonic() < end:  # chatter while waiting
            await api.user_message(user_id, user_id, text="/status")
            await asyncio.sleep(0.5)

    began = time.perf_counter()
    await asyncio.gather(*(user(i, user_id) for i, user_id in enumerate(users)))
    stop.set()
    await ticker
    done = len([c for c in api.sent("sendVideo") if "reply_markup" in c.params])
    return time.perf_counter() - began, lags, ack_times, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--telegram", action="store_true", help="chat through the Telegram front end")
    args = parser.parse_args()
    asyncio.run(run(args.sessions, args.seconds, telegram=args.telegram))


if __name__ == "__main__":
    main()
