"""A session's files in the data dir (``sessions/<session_id>/``): its folder, and the pictures
users send, checked once by the start-picture policy (``shared.pictures``, off the event loop)
and written whole as the normalised PNG it returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot import core
from shared.config import Config
from shared.pictures import Accepted, Refused, check_picture_off_loop


class Media:
    def __init__(self, config: Config) -> None:
        self.config = config

    def session_dir(self, session_id: str) -> Path:
        path = (self.config.data_dir / "sessions" / session_id).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def check_picture(self, data: bytes | Accepted) -> Accepted | Refused:
        """Decode ``data`` once, off the event loop (a large picture never stalls the chats), in
        the pictures' bounded pool; a picture an adapter has checked already is taken as it is."""
        if isinstance(data, Accepted):
            return data
        return await check_picture_off_loop(data, self.config.limits)

    async def save_picture(self, session_id: str, picture: Accepted, *, stem: str = "picture") -> core.Picture:
        """Write an accepted picture into the session's folder, under a name of our own
        (``picture-N.png``; end keyframes ``keyframe-N.png``)."""
        from worker.files import atomic_write_bytes

        folder = self.session_dir(session_id)
        existing = len(list(folder.glob(f"{stem}-*")))
        path = folder / f"{stem}-{existing + 1}.png"
        await asyncio.to_thread(atomic_write_bytes, path, picture.png)
        return core.Picture(path=str(path), width=picture.width, height=picture.height)
