"""A bot process for crash tests: the real store, service, dispatcher and preview workers, with a
chat platform that appends what it is sent to a JSON-lines file and takes user actions as JSON
lines on stdin. Tests kill it with SIGKILL and start another on the same data.

    python -m tests.bot.crash_bot CONFIG SENT_LOG [DIE_AFTER]

With DIE_AFTER the process SIGKILLs itself in the middle of a post: ``video`` (a role: ``video``,
``frame``, ``final.1``…) right after the platform accepted that message, before the service heard
back (the worst moment: the message is up, nothing says so); ``told:video`` once the service was
told; ``before:video`` once the service recorded that it will send it, before the platform got it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bot.ports import IGNORE_SENT, NO_INTENT, Action, ChatRef, FinalPost, ReviewPage, SegmentPost, Sending, Sent
from bot.service import ConversationService
from bot.store import Store
from shared.config import load_config

PLATFORM = "telegram"


class FileChat:
    """Records each delivery durably, as the chat server would have it."""

    platform = PLATFORM
    resend_window = 0.0  # like Telegram: no idempotency key

    def __init__(self, log_path: Path, die_after: str = "") -> None:
        self.log_path = log_path
        self.die_after = die_after
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

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        return self._write({"kind": "text", "text": text, "controls": [data for _, data in controls]})

    async def send_photo(self, chat: ChatRef, path: Path, caption: str) -> str:
        message_id = self._write({"kind": "photo", "path": str(path), "caption": caption})
        if self.die_after == "photo":  # the platform took it; the service never heard back
            os.kill(os.getpid(), signal.SIGKILL)
        return message_id

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        self._write({"kind": "edit", "text": text, "target": message_id})

    async def edit_media(self, chat: ChatRef, message_id: str, path: Path, text: str) -> str:
        self._write({"kind": "media", "path": str(path), "text": text, "target": message_id})
        return message_id

    def _die_at(self, moment: str) -> None:
        if moment == self.die_after:
            os.kill(os.getpid(), signal.SIGKILL)

    async def _send(self, role: str, record: dict[str, Any], sent: Sent, sending: Sending) -> str:
        await sending((role,))
        self._die_at(f"before:{role}")
        message_id = self._write(record)
        self._die_at(role)
        await sent(role, message_id)
        self._die_at(f"told:{role}")
        return message_id

    async def post_segment(
        self, chat: ChatRef, post: SegmentPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> dict[str, str]:
        ids: dict[str, str] = {}
        for role, path in (("video", post.video), ("frame", post.last_frame)):
            if role not in post.already:
                record = {"kind": "segment", "role": role, "segment_id": post.segment_id, "path": str(path)}
                ids[role] = await self._send(role, record | {"caption": post.caption}, sent, sending)
        return ids

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        self._write({"kind": "delete", "target": message_id})

    async def close_controls(
        self, chat: ChatRef, message_ids: dict[str, str], note: str, keep: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._write({"kind": "close", "text": note, "target": message_ids.get("video"), "keep": list(keep)})

    async def show_review(self, chat: ChatRef, message_ids: dict[str, str], page: ReviewPage) -> None:
        self._write({"kind": "page", "caption": page.caption, "target": message_ids.get("video")})

    async def post_final(
        self, chat: ChatRef, post: FinalPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> list[str]:
        ids = []
        for number, part in enumerate(post.parts, start=1):
            if number not in post.already:
                record = {"kind": "final", "part": number, "path": str(part), "caption": post.caption}
                ids.append(await self._send(f"final.{number}", record, sent, sending))
        return ids


async def main(config_path: str, log_path: str, die_after: str = "") -> None:
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    from bot.app import worker_factory
    from bot.dispatcher import Dispatcher

    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        service.add_port(FileChat(Path(log_path), die_after))
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
    asyncio.run(main(*sys.argv[1:4]))
