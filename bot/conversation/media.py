"""A session's files in the data dir (``sessions/<session_id>/``): its folder, and the pictures
users send, checked (``bot.pictures``) and written whole."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from PIL import Image, ImageOps

from bot import core
from bot.pictures import picture_problem
from shared.config import Config


class Media:
    def __init__(self, config: Config) -> None:
        self.config = config

    def session_dir(self, session_id: str) -> Path:
        path = (self.config.data_dir / "sessions" / session_id).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def picture_problem(self, data: bytes) -> str | None:
        return picture_problem(data, self.config.limits)

    async def save_picture(self, session_id: str, data: bytes) -> core.Picture:
        """Write a picture that passed :meth:`picture_problem` into the session's folder."""
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "png").lower()
            width, height = ImageOps.exif_transpose(img).size
        ext = {"jpeg": "jpg", "mpo": "jpg"}.get(fmt, fmt)
        folder = self.session_dir(session_id)
        existing = len(list(folder.glob("picture-*")))
        path = folder / f"picture-{existing + 1}.{ext}"
        from worker.files import atomic_write_bytes

        await asyncio.to_thread(atomic_write_bytes, path, data)
        return core.Picture(path=str(path), width=width, height=height)
