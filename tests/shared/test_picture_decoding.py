"""Pictures are decoded off the event loop, in a pool of their own that bounds how many decode at
once (a 40-megapixel picture takes ~300 MB while it does)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from PIL import ImageFile

from shared.pictures import DECODER_NICENESS, DECODERS, Accepted, check_picture_off_loop
from tests.bot.service_harness import picture_bytes


async def test_at_most_decoders_pictures_decode_at_once_and_never_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, most, threads = 0, 0, set()
    lock = threading.Lock()
    load = ImageFile.ImageFile.load

    def slow_load(image: ImageFile.ImageFile) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.current_thread().name)
        try:
            time.sleep(0.05)  # long enough for the others to pile up
            return load(image)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", slow_load)
    results = await asyncio.gather(*(check_picture_off_loop(picture_bytes(96, 96 + i)) for i in range(6)))
    assert all(isinstance(r, Accepted) for r in results)
    assert [r.height for r in results if isinstance(r, Accepted)] == [96 + i for i in range(6)]
    assert most == DECODERS
    assert all(name.startswith("picture-decode") for name in threads)


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
async def test_the_decoding_threads_yield_the_cpu_to_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    load = ImageFile.ImageFile.load

    def noting_load(image: ImageFile.ImageFile) -> object:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", noting_load)
    assert isinstance(await check_picture_off_loop(picture_bytes()), Accepted)
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen and all(nice == min(19, ours + DECODER_NICENESS) for nice in seen)
