"""The bot killed with SIGKILL at each session state, then restarted on the same database and
data dir: nothing lost, nothing posted twice, and the session carries on to its final video."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import picture_bytes, write_config
from worker.video import probe

ROOT = Path(__file__).resolve().parents[2]


class BotProcess:
    def __init__(self, config: Path, log: Path, die_after: str = "") -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bot.crash_bot", str(config), str(log), die_after],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "READY"

    def send(self, **action: Any) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(action) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().startswith("DONE")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def died(self) -> bool:
        return self.proc.poll() is not None


def wait_until(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def sent(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_killed_at_every_state_nothing_lost_nothing_posted_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path, step_delay=0.25)
    db = tmp_path / "data" / "framechain.db"
    log = tmp_path / "sent.jsonl"
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())

    def state() -> str:
        rows = query(db, "SELECT state FROM sessions")
        return str(rows[0][0]) if rows else ""

    def segments(status: str) -> list[int]:
        return [r[0] for r in query(db, f"SELECT id FROM segments WHERE status = '{status}' ORDER BY id")]

    def posted_segments() -> list[int]:
        return [r["segment_id"] for r in sent(log) if r["kind"] == "segment" and r["role"] == "video"]

    # awaiting_image
    bot = BotProcess(config, log)
    bot.send(op="start")
    assert state() == "awaiting_image"
    bot.kill()

    # awaiting_prompt
    bot = BotProcess(config, log)
    bot.send(op="image", image=str(image))
    assert state() == "awaiting_prompt"
    bot.kill()

    # generating: killed while the worker is mid-job
    bot = BotProcess(config, log)
    bot.send(op="text", text="the first segment")
    wait_until(lambda: segments("running"))
    assert state() == "generating"
    bot.kill()
    assert posted_segments() == []

    # The restarted bot re-queues the job; the segment is posted once. Then kill while reviewing.
    bot = BotProcess(config, log)
    [first] = wait_until(posted_segments)
    wait_until(lambda: state() == "reviewing")
    bot.kill()

    # reviewing -> the old controls still work after the restart; nothing is posted again.
    bot = BotProcess(config, log)
    time.sleep(0.5)
    assert posted_segments() == [first]
    bot.send(op="control", segment=first, action="approve")
    assert state() == "awaiting_prompt" and segments("approved") == [first]
    bot.send(op="text", text="the second segment")
    wait_until(lambda: len(posted_segments()) == 2)
    second = posted_segments()[1]
    wait_until(lambda: state() == "reviewing")
    bot.send(op="control", segment=second, action="approve")
    bot.send(op="command", name="finish")
    bot.kill()  # assembling, or just finished

    bot = BotProcess(config, log)
    finals = wait_until(lambda: [r for r in sent(log) if r["kind"] == "final"])
    wait_until(lambda: state() == "finished")
    time.sleep(0.5)
    bot.kill()

    assert len([r for r in sent(log) if r["kind"] == "final"]) == 1
    assert Counter(posted_segments()) == {first: 1, second: 1}
    assert probe(finals[0]["path"]).frames == 33 + 32
    # Approved segments and their hand-off frames are all there.
    for video, last_frame in query(db, "SELECT video, last_frame FROM segments WHERE status = 'approved'"):
        assert Path(video).exists() and Path(last_frame).exists()
    # No temporary files were left where whole ones are expected.
    assert not [p for p in (tmp_path / "data" / "sessions").rglob("*") if ".tmp" in p.name]


def test_killed_between_the_messages_of_a_post_each_is_sent_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "data" / "framechain.db"
    log = tmp_path / "sent.jsonl"
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())

    def deliveries(kind: str) -> list[dict[str, Any]]:
        return [r for r in sent(log) if r["kind"] == kind]

    # Killed right after the platform took the segment's video, before the bot heard back.
    bot = BotProcess(config, log, die_after="video")
    bot.send(op="start", image=str(image), prompt="the sun rises")
    wait_until(bot.died)
    assert [r["role"] for r in deliveries("segment")] == ["video"]

    # The restart sends the frame only, and the progress message goes. The video is in doubt (a
    # Telegram-like chat cannot be asked to drop a copy): a notice offers it instead.
    bot = BotProcess(config, log)
    wait_until(lambda: len(deliveries("segment")) == 2)
    [notice] = [r for r in deliveries("text") if "Send again" in r["text"]]
    assert "segment 1" in notice["text"] and notice["controls"][0].endswith(":resend")
    wait_until(lambda: deliveries("delete"))
    time.sleep(0.5)
    video, frame = deliveries("segment")
    assert (video["role"], frame["role"]) == ("video", "frame") and frame["caption"] == video["caption"]
    assert len(deliveries("delete")) == 1
    segment = video["segment_id"]
    bot.send(op="control", segment=segment, action="approve")
    bot.kill()

    # Killed right after the final video went out, before the bot heard back: a notice, no copy.
    bot = BotProcess(config, log, die_after="final.1")
    bot.send(op="command", name="finish")
    wait_until(bot.died)
    assert len(deliveries("final")) == 1

    bot = BotProcess(config, log)
    wait_until(lambda: query(db, "SELECT json_extract(posted, '$.final') FROM sessions")[0][0] is not None)
    time.sleep(0.5)
    bot.kill()
    [final] = deliveries("final")
    assert [r for r in deliveries("text") if "Send again" in r["text"]][1]["controls"][0].endswith(":refinal")
    assert final["caption"].startswith("Here's your video: 1 segment")
    assert Counter((r["segment_id"], r["role"]) for r in deliveries("segment")) == {
        (segment, "video"): 1,
        (segment, "frame"): 1,
    }
    # The storyboard went out once: after the final, by the restarted bot.
    [sheet] = deliveries("photo")
    assert sheet["caption"].startswith("The storyboard of your video") and Path(sheet["path"]).is_file()


def test_killed_right_after_the_storyboard_went_out_it_is_not_sent_again(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "data" / "framechain.db"
    log = tmp_path / "sent.jsonl"
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())

    def deliveries(kind: str) -> list[dict[str, Any]]:
        return [r for r in sent(log) if r["kind"] == kind]

    bot = BotProcess(config, log, die_after="photo")
    bot.send(op="start", image=str(image), prompt="the sun rises")
    [take] = wait_until(lambda: deliveries("segment")[1:])  # the video and its frame
    bot.send(op="control", segment=take["segment_id"], action="apfin")
    wait_until(bot.died)
    assert len(deliveries("final")) == 1 and len(deliveries("photo")) == 1

    bot = BotProcess(config, log)
    wait_until(lambda: query(db, "SELECT json_extract(posted, '$.final') FROM sessions")[0][0] is not None)
    time.sleep(0.3)
    bot.kill()
    assert len(deliveries("final")) == 1 and len(deliveries("photo")) == 1


class _LowDisk:
    """The data dir's free space: under the reserve a segment needs."""

    def __call__(self, path: Path) -> int:
        return 1_000_000


async def test_a_job_queued_again_after_a_restart_passes_the_free_disk_check(tmp_path: Path) -> None:
    from bot.ports import ChatRef
    from bot.store import PENDING, SessionState
    from tests.bot.service_harness import running_bot
    from tests.bot.test_delivery import until

    chat_ref, owner = ChatRef("telegram", "100", ""), "7"
    config = tmp_path / "c.toml"
    config.write_text(
        write_config(tmp_path, step_delay=5.0)
        .read_text()
        .replace("[workers]", "[storage]\nmin_free_mb = 500\n[telegram]\nadmin_ids = [4242]\n[workers]")
    )
    async with running_bot(config) as bot:
        await bot.service.start(chat_ref, owner, picture_bytes(), "the sun rises")
        row = await bot.store.find_active_session("telegram", "100", "", owner)
        assert row is not None
        session = row.id

        async def running() -> bool:
            return any(s.status.value == "running" for s in await bot.store.list_segments(session))

        await until(running, "the job to run")
    low = FakeChat()
    async with running_bot(config, chat=low, free_space=_LowDisk()) as bot:
        row = await bot.store.get_session(session)
        assert row.state is SessionState.AWAITING_PROMPT
        assert await bot.store.list_segments(session, PENDING) == []  # not queued again
        assert bot.dispatcher.position(str((await bot.store.list_segments(session))[0].id)) is None
        texts = low.texts(chat_ref)
        assert any("couldn't be made" in t and "1 MB free" in t and "/regenerate" in t for t in texts), texts
        [alert] = low.texts(ChatRef("telegram", "4242", ""))
        assert "running low" in alert
    assert low.of("segment") == []
