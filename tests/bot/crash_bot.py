"""A bot process for crash tests: the real store, service, dispatcher and preview workers, with a
chat platform that appends what it is sent to a JSON-lines file and takes user actions as JSON
lines on stdin. Tests kill it with SIGKILL and start another on the same data.

    python -m tests.bot.crash_bot CONFIG SENT_LOG
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

from bot.ports import Action, ChatRef, FinalPost, SegmentPost
from bot.service import ConversationService
from bot.store import Store
from shared.config import load_config

PLATFORM = "telegram"


class FileChat:
    """Records each delivery durably, as the chat server would have it."""

    platform = PLATFORM

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._ids = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000)

    def _write(self, record: dict[str, Any]) -> str:
        message_id = str(next(self._ids))
        record["message_id"] = message_id
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return message_id

    def upload_limit(self, chat: ChatRef) -> int:
        return 50 * 1024 * 1024

    async def send_text(self, chat: ChatRef, text: str) -> str:
        return self._write({"kind": "text", "text": text})

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        self._write({"kind": "edit", "text": text, "target": message_id})

    async def post_segment(self, chat: ChatRef, post: SegmentPost) -> dict[str, str]:
        video = self._write({"kind": "segment", "segment_id": post.segment_id, "video": str(post.video)})
        return {"video": video}

    async def close_controls(self, chat: ChatRef, message_ids: dict[str, str], note: str) -> None:
        self._write({"kind": "close", "text": note, "target": message_ids.get("video")})

    async def post_final(self, chat: ChatRef, post: FinalPost) -> list[str]:
        return [self._write({"kind": "final", "parts": [str(p) for p in post.parts]})]


async def main(config_path: str, log_path: str) -> None:
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    from bot.app import worker_factory
    from bot.dispatcher import Dispatcher

    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        service.add_port(FileChat(Path(log_path)))
        dispatcher = Dispatcher(config.workers.devices, worker_factory(config_path), service, restart_backoff=0.05)
        service.attach(dispatcher)
        await service.resume()
        await dispatcher.start()
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            action = json.loads(line)
            chat = ChatRef(PLATFORM, str(action.get("chat", "1")), "")
            user = str(action.get("user", "42"))
            op = action["op"]
            if op == "start":
                image = Path(action["image"]).read_bytes() if action.get("image") else None
                await service.start(chat, user, image, action.get("prompt"))
            elif op == "image":
                await service.image(chat, user, Path(action["image"]).read_bytes())
            elif op == "text":
                await service.text(chat, user, action["text"])
            elif op == "control":
                await service.control(chat, user, int(action["segment"]), Action(action["action"]))
            elif op == "command":
                await service.command(chat, user, action["name"], action.get("argument", ""))
            print("DONE", op, flush=True)
        await dispatcher.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
