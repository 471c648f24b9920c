"""SVI latent continuity through the whole bot: /settings, the job's latent file, regenerate and
the fallback, and the join, with a real worker process on the tiny Wan2.2 model and a tiny LoRA
standing in for the SVI 2.0 Pro LoRAs."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from bot.ports import Action
from bot.store import SegmentRow
from tests.bot.service_harness import picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER, segment_posts
from tests.worker.test_wan_lora import write_lora
from worker.video import probe

FRAMES = 33


def continued_from(segment: SegmentRow) -> str:
    with safe_open(str(segment.params["latents"]), framework="pt") as f:
        return str((f.metadata() or {}).get("continued_from", ""))


async def test_an_svi_session_continues_from_approved_latents_and_joins_exactly(
    tmp_path: Path, tiny_wan_dir: Path
) -> None:
    lora = write_lora(tmp_path / "svi.safetensors", seed=3, strength=0.3)
    extra = f'[[generation.loras]]\npath = "{lora}"\nrole = "svi"\n'
    config = write_config(tmp_path, backend="wan", model=tiny_wan_dir, size=32, steps=2, frames=FRAMES, extra=extra)
    async with running_bot(config) as bot:
        chat, svc, store = bot.chat, bot.service, bot.store
        # An SVI LoRA is not a distillation LoRA: the configured steps stay.
        assert bot.config.generation.sampling_steps == 2
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.command(CHAT, OWNER, "settings", "continuity=svi")
        assert "continuity svi" in chat.texts(CHAT)[-1]

        await svc.text(CHAT, OWNER, "the sun rises")
        [seg1] = await segment_posts(bot, 1)
        first = await store.get_segment(seg1)
        # The first segment is ordinary image-to-video; its latents are kept beside its files.
        assert first.params["continuity"] == "frame" and first.params["overlap"] == 1
        assert Path(first.params["latents"]).name == "seg001-take1.latent.safetensors"
        assert continued_from(first) == ""
        await svc.control(CHAT, OWNER, seg1, Action.APPROVE)

        await svc.text(CHAT, OWNER, "a bird flies past")
        [_, take1] = await segment_posts(bot, 2)
        assert continued_from(await store.get_segment(take1)) == "seg001-take1.latent.safetensors"
        # A regenerate continues from the approved predecessor again, never from the take it replaces.
        await svc.control(CHAT, OWNER, take1, Action.REGENERATE)
        [*_, take2] = await segment_posts(bot, 3)
        second = await store.get_segment(take2)
        assert continued_from(second) == "seg001-take1.latent.safetensors"
        assert second.params["continuity"] == "svi" and second.params["overlap"] == 4
        await svc.control(CHAT, OWNER, take2, Action.APPROVE)

        # Latents that cannot be read are refused: the take is made from the last frame, and said so.
        Path(second.params["latents"]).write_bytes(b"not a safetensors file")
        await svc.text(CHAT, OWNER, "clouds gather")
        [*_, seg3] = await segment_posts(bot, 4)
        third = await store.get_segment(seg3)
        assert third.params["continuity"] == "frame" and third.params["overlap"] == 1
        assert any("cannot be read" in t and "from the last frame instead" in t for t in chat.texts(CHAT))
        await svc.control(CHAT, OWNER, seg3, Action.APPROVE)

        await svc.command(CHAT, OWNER, "finish")
        [final] = await chat.wait_for("final", timeout=120)
        # 33 frames, then the svi take less its 4 shared frames, then the frame take less its first.
        assert probe(final.post.parts[0]).frames == FRAMES + (FRAMES - 4) + (FRAMES - 1)


async def test_continuity_svi_is_refused_without_the_svi_loras(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), None)
        await bot.service.command(CHAT, OWNER, "settings", "continuity=svi")
        assert "needs the SVI 2.0 Pro LoRAs" in bot.chat.texts(CHAT)[-1]
