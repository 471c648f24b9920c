"""A /start picture on Discord is decoded once: the client checks it (so a bad one is refused
privately, before a thread is opened) and hands the checked picture on; the service keeps it
without decoding it again. Counted with a spy on Pillow's decoding, in the real stack."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import simcord
from PIL import ImageFile

from shared.config import load_config
from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.test_discord_flow import bot_process, review_messages, until

#: A size nothing else in the session has (segments are 64 px), so only its decodes count.
SIZE = (208, 144)


async def test_a_start_picture_is_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: dict[int, tuple[ImageFile.ImageFile, str]] = {}  # each opened file once, kept alive
    lock = threading.Lock()
    load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile) -> object:
        if image.size == SIZE:
            with lock:
                decoded.setdefault(id(image), (image, threading.current_thread().name))
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    config_path = write_config(tmp_path)
    with config_path.open("a") as fh:
        fh.write("[discord]\nopen = true\n")
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True)
    async with bot_process(config, config_path) as bot, simcord.run(bot.front.client) as env:
        guild = env.create_guild("Studio")
        channel = guild.create_text_channel("animations")
        alice = guild.add_member(env.create_user("alice"))
        await alice.slash(channel, "start", image=("sun.png", picture_bytes(*SIZE)), prompt="the sun rises")
        (thread,) = channel.threads
        await until(env, lambda: len(review_messages(thread)) == 1, "the first take")
    # Once, and not on the event loop's thread (the worker, another process, is not counted).
    threads = [name for _, name in decoded.values()]
    assert len(threads) == 1
    assert threads[0].startswith("picture-decode")
