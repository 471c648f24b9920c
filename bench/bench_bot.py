"""The bot process under load: event-loop lag, prompt-to-acknowledgement time, memory.

A real service, store and dispatcher drive a preview worker process (slowed to a model's pace)
while many sessions chat at once through an in-process chat platform. Prints figures; targets:
loop lag p99 <= 20 ms, prompt -> queue acknowledgement <= 100 ms, and no torch in the process.

    .venv/bin/python -m bench.bench_bot [--sessions 60] [--seconds 20]
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
from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import picture_bytes, running_bot, write_config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class TimedChat(FakeChat):
    """Notes when each "queued" acknowledgement is sent, per chat."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: dict[ChatRef, list[float]] = {}

    async def send_text(self, chat: ChatRef, text: str) -> str:
        if "queued" in text:
            self.acks.setdefault(chat, []).append(time.perf_counter())
        return await super().send_text(chat, text)


async def measure_lag(stop: asyncio.Event, lags: list[float], tick: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(tick)
        lags.append((loop.time() - start - tick) * 1000)


async def run(sessions: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), step_delay=0.2, size=64)
        chat = TimedChat()
        async with running_bot(config, chat=chat) as bot:
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
            elapsed = time.perf_counter() - began
            done = len(chat.of("segment"))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"sessions: {sessions}, run: {elapsed:.1f} s, segments delivered meanwhile: {done}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(run(args.sessions, args.seconds))


if __name__ == "__main__":
    main()
