"""Chat sessions rendered on ComfyUI stand-ins, through the real service, dispatcher and worker
processes (one per server): two servers serving one queue, a server dying mid-job, one down at start."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.ports import Action, ChatRef
from bot.store import SegmentStatus
from tests.bot.service_harness import picture_bytes, running_bot, write_config
from tests.comfyui_standin import ComfyStandIn, expected_frames
from worker.images import prepare_start_image
from worker.video import probe

pytestmark = pytest.mark.timeout(120)

SIZE, FRAMES, STEPS = 64, 33, 4


def comfyui_config(tmp_path: Path, *urls: str) -> Path:
    listed = ", ".join(f'"{u}"' for u in urls)
    extra = (
        'color_match = "off"\n'
        f"[comfyui]\nurls = [{listed}]\npoll_interval = 0.1\nserver_lost_after = 0.5\nconnect_timeout = 2.0\n"
    )
    return write_config(tmp_path, backend="comfyui", frames=FRAMES, steps=STEPS, size=SIZE, extra=extra)


@pytest.fixture
async def servers() -> AsyncIterator[list[ComfyStandIn]]:
    started = [ComfyStandIn(step_delay=0.05), ComfyStandIn(step_delay=0.05)]
    for server in started:
        await server.start()
    yield started
    for server in started:
        await server.stop()


def uploaded_start(server: ComfyStandIn, body: dict[str, object]) -> np.ndarray:
    graph = body["prompt"]
    assert isinstance(graph, dict)
    return np.asarray(Image.open(io.BytesIO(server.uploads[graph["1"]["inputs"]["image"]])).convert("RGB"))


async def test_a_session_renders_through_two_servers_at_once(tmp_path: Path, servers: list[ComfyStandIn]) -> None:
    async with running_bot(comfyui_config(tmp_path, *(s.url for s in servers))) as bot:
        assert bot.dispatcher.devices == ["comfyui:0", "comfyui:1"]
        svc, chat = bot.service, bot.chat
        alice, bob = ChatRef("telegram", "100", ""), ChatRef("telegram", "200", "")
        await svc.start(alice, "1", picture_bytes(), "the sun rises")
        await svc.start(bob, "2", picture_bytes(), "the tide comes in")
        await chat.wait_for("segment", 1, alice)
        await chat.wait_for("segment", 1, bob)
        # One job on each server, at the same time.
        assert [len(s.received) for s in servers] == [1, 1]
        [first] = chat.of("segment", alice)
        post = first.post
        assert (post.width, post.height, post.frames) == (SIZE, SIZE, FRAMES) and "preview" not in post.caption
        segment = await bot.store.get_segment(post.segment_id)
        # The hand-off frame is exactly the last frame the server rendered.
        server = next(
            s for s in servers if any(b["prompt"]["8"]["inputs"]["text"] == "the sun rises" for b in s.received)
        )
        body = server.received[0]
        start = Image.fromarray(uploaded_start(server, body))
        seed = body["prompt"]["11"]["inputs"]["noise_seed"]
        frames = expected_frames(prepare_start_image(start, SIZE, SIZE), SIZE, SIZE, FRAMES, seed)
        assert segment.last_frame is not None
        assert np.array_equal(np.asarray(Image.open(segment.last_frame).convert("RGB")), frames[-1])
        assert segment.seed == seed

        await svc.control(alice, "1", post.segment_id, Action.APPROVE)
        await svc.text(alice, "1", "a gull flies past")
        await chat.wait_for("segment", 2, alice)
        # Segment 2 started from segment 1's hand-off frame, uploaded without loss.
        second_body = next(
            b for s in servers for b in s.received if b["prompt"]["8"]["inputs"]["text"] == "a gull flies past"
        )
        second_server = next(s for s in servers if second_body in s.received)
        assert np.array_equal(uploaded_start(second_server, second_body), frames[-1])
        seg2 = chat.of("segment", alice)[-1].post.segment_id
        await svc.control(alice, "1", seg2, Action.APPROVE)
        await svc.command(alice, "1", "finish")
        [final] = await chat.wait_for("final", 1, alice)
        assert probe(final.post.parts[0]).frames == FRAMES + FRAMES - 1


async def test_two_servers_serve_one_fair_queue(tmp_path: Path, servers: list[ComfyStandIn]) -> None:
    for server in servers:
        server.step_delay = 0.3  # both busy while the rest queues
    async with running_bot(comfyui_config(tmp_path, *(s.url for s in servers))) as bot:
        svc, chat = bot.service, bot.chat
        await _until(lambda: all(w is not None and w.ready for w in bot.dispatcher.workers.values()))
        # Alice opens three sessions (three chats), then Bob one.
        alice = [ChatRef("telegram", str(100 + i), "") for i in range(3)]
        bob = ChatRef("telegram", "200", "")
        for i, where in enumerate(alice):
            await svc.start(where, "1", picture_bytes(), f"alice {i + 1}")
        # Bob arrives once both servers hold one of Alice's (on a loaded machine the dispatch
        # can lag the starts): her third then waits in the queue with his.
        await _until(lambda: all(s.received for s in servers))
        await svc.start(bob, "2", picture_bytes(), "bob 1")
        await chat.wait_for("segment", 4)
    arrivals = sorted(
        (t, b["prompt"]["8"]["inputs"]["text"]) for s in servers for t, b in zip(s.received_at, s.received, strict=True)
    )
    order = [text for _, text in arrivals]
    # Alice's first two take both servers; Bob, not yet served, goes before her third.
    assert sorted(order[:2]) == ["alice 1", "alice 2"] and order[2:] == ["bob 1", "alice 3"]
    assert all(len(s.received) == 2 for s in servers)


async def test_a_server_that_dies_mid_job_hands_the_job_to_the_other(
    tmp_path: Path, servers: list[ComfyStandIn]
) -> None:
    async with running_bot(comfyui_config(tmp_path, *(s.url for s in servers))) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(ChatRef("telegram", "100", ""), "1", picture_bytes(), "survives a server")
        for _ in range(400):
            busy = [s for s in servers if s.running is not None]
            if busy:
                break
            await asyncio.sleep(0.02)
        [dying] = busy
        await dying.stop()
        [sent] = await chat.wait_for("segment", 1)
        segment = await bot.store.get_segment(sent.post.segment_id)
        assert segment.status is SegmentStatus.DONE and segment.tries == 2
        [other] = [s for s in servers if s is not dying]
        assert len(other.received) == 1 and other.history
        # The owner was told, in the take's progress message, and saw it start over.
        edits = [e.text for e in chat.of("edit")]
        told = edits.index("🔁 Segment 1 · take 1 — the ComfyUI server stopped answering; trying again on another one.")
        assert "⏳ Segment 1 · take 1 — starting again…" in edits[told:]


async def test_a_job_whose_only_server_goes_away_waits_for_it_and_the_owner_is_told(
    tmp_path: Path, servers: list[ComfyStandIn]
) -> None:
    server = servers[0]
    async with running_bot(comfyui_config(tmp_path, server.url)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(ChatRef("telegram", "100", ""), "1", picture_bytes(), "waits for its server")
        await _until(lambda: server.running is not None)
        await server.stop()
        await _until(lambda: any("once it is back" in e.text for e in chat.of("edit")))
        await server.restart()
        [sent] = await chat.wait_for("segment", 1)
        assert (await bot.store.get_segment(sent.post.segment_id)).tries == 2
        edits = [e.text for e in chat.of("edit")]
        assert "🔁 Segment 1 · take 1 — the ComfyUI server stopped answering; trying again once it is back." in edits


async def test_with_the_only_server_down_at_start_the_owner_is_told_and_it_renders_once_back(
    tmp_path: Path, servers: list[ComfyStandIn]
) -> None:
    server = servers[0]
    await server.stop()
    async with running_bot(comfyui_config(tmp_path, server.url)) as bot:
        chat = bot.chat
        await _until(lambda: bool(bot.dispatcher.failing))  # its worker has already failed to start once
        await bot.service.start(ChatRef("telegram", "100", ""), "1", picture_bytes(), "waits for the server")
        told = "⚠️ Segment 1 · take 1 — still queued: the ComfyUI server is not answering."
        await _until(lambda: any(e.text.startswith(told) for e in chat.of("edit")))
        await server.restart()
        await chat.wait_for("segment", 1)
        assert len(server.received) == 1


async def test_the_owner_sees_their_place_behind_other_peoples_jobs_on_the_server(
    tmp_path: Path, servers: list[ComfyStandIn]
) -> None:
    server = servers[0]
    holds = [await server.hold_foreign_job(), await server.hold_foreign_job()]  # one runs, one waits
    async with running_bot(comfyui_config(tmp_path, server.url)) as bot:
        chat = bot.chat
        await bot.service.start(ChatRef("telegram", "100", ""), "1", picture_bytes(), "waits its turn")
        label = "⏳ Segment 1 · take 1 — waiting on the ComfyUI server"
        await _until(lambda: any(e.text == f"{label}: 2 other jobs ahead there." for e in chat.of("edit")))
        holds[0].set()
        await _until(lambda: any(e.text == f"{label}: 1 other job ahead there." for e in chat.of("edit")))
        holds[1].set()
        await chat.wait_for("segment", 1)
        edits = [e.text for e in chat.of("edit")]
        # Then the steps, once ours runs there.
        assert any(
            t.startswith("⏳ Segment 1 · take 1 — step 4/4")
            for t in edits[edits.index(f"{label}: 1 other job ahead there.") :]
        )


async def test_a_server_down_at_start_leaves_the_others_serving(tmp_path: Path, servers: list[ComfyStandIn]) -> None:
    down = servers[0]
    await down.stop()
    async with running_bot(comfyui_config(tmp_path, down.url, servers[1].url)) as bot:
        await bot.service.start(ChatRef("telegram", "100", ""), "1", picture_bytes(), "one server is enough")
        await bot.chat.wait_for("segment", 1)
        assert len(servers[1].received) == 1


async def test_cancel_through_the_chat_while_waiting_on_the_server_and_while_running(
    tmp_path: Path, servers: list[ComfyStandIn]
) -> None:
    server = servers[0]
    server.step_delay = 0.2
    hold = await server.hold_foreign_job()  # someone else's job occupies the server
    async with running_bot(comfyui_config(tmp_path, server.url)) as bot:
        svc = bot.service
        waiting, running = ChatRef("telegram", "100", ""), ChatRef("telegram", "200", "")
        await svc.start(waiting, "1", picture_bytes(), "waits behind someone else")
        await _until(lambda: len(server.pending) == 1)
        await svc.command(waiting, "1", "cancel")
        await _until(lambda: bool(server.deletes) and not bot.dispatcher.running)
        assert server.interrupts == [] and server.running is not None and server.running.hold is hold
        hold.set()

        await svc.start(running, "2", picture_bytes(), "interrupted while it runs")
        await _until(lambda: server.running is not None and server.running.prompt_id in server.sent_ids())
        await svc.command(running, "2", "cancel")
        await _until(lambda: bool(server.interrupts) and not bot.dispatcher.running)
        [prompt_id] = [b for b in server.history]
        assert server.interrupts == [prompt_id]
        assert bot.chat.of("segment") == []


async def _until(condition: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)
