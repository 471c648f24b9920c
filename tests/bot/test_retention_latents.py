"""A take's latents go with its media: pruning a session removes its latent files too."""

from __future__ import annotations

from pathlib import Path

from bot.retention import DAY, prune
from bot.store import SessionState, Store
from tests.bot.test_retention import NOW, Clock, media, with_storage


async def test_prune_removes_latents_with_the_media_they_belong_to(tmp_path: Path) -> None:
    config = with_storage(tmp_path, retention_days=30, keep_finals=True)
    clock = Clock()
    async with Store.open(config.database_path, clock=clock) as store:
        clock.now = NOW - 40 * DAY
        row = await store.create_session(platform="telegram", chat_id="1", owner_id="1", session_id="svi")
        await store.update_session(row.id, state=SessionState.CANCELLED)
        clock.now = NOW
        takes = [f"seg00{i}-take1.{kind}" for i in (1, 2) for kind in ("mp4", "png", "latent.safetensors")]
        folder = media(config, "svi", "picture-1.png", *takes)
        report = await prune(store, config, now=NOW)
        assert report.sessions == ["svi"] and report.files == 7
        assert not folder.exists() or not list(folder.rglob("*.safetensors"))
