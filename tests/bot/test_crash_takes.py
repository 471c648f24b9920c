"""A batch of takes (``settings takes = 3``) through SIGKILLs while it is made: every take is made
once it is restarted, none is lost, and none is posted twice (the batch is one review message)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.test_crash_recovery import BotProcess, query, sent, wait_until


def test_killed_in_the_middle_of_three_takes_none_lost_none_posted_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path, step_delay=0.15)
    db = tmp_path / "data" / "framechain.db"
    log = tmp_path / "sent.jsonl"
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())

    def statuses() -> list[str]:
        return [str(r[0]) for r in query(db, "SELECT status FROM segments ORDER BY attempt")]

    bot = BotProcess(config, log)
    bot.send(op="start", image=str(image))
    bot.send(op="command", name="settings", argument="takes=3")
    bot.send(op="text", text="three ways")
    assert len(statuses()) == 3
    # Killed while the takes are made, at a few points: mid-job, and once one or two are done.
    for wait in (0.4, 1.1, 0.7, 1.5):
        time.sleep(wait)
        bot.kill()
        bot = BotProcess(config, log)
    wait_until(lambda: statuses() == ["done"] * 3, timeout=90)
    wait_until(lambda: str(query(db, "SELECT state FROM sessions")[0][0]) == "reviewing")
    time.sleep(0.5)
    bot.kill()

    posts = [r for r in sent(log) if r["kind"] == "segment" and r["role"] == "video"]
    assert len(posts) == len({r["segment_id"] for r in posts}) == 1  # one review message, posted once
    # The other two joined it, each once; every take's files are there.
    joined = [r[0] for r in query(db, "SELECT json_extract(posted, '$.in') FROM segments") if r[0]]
    assert len(joined) == 2
    for video, last_frame in query(db, "SELECT video, last_frame FROM segments"):
        assert Path(video).exists() and Path(last_frame).exists()
    seeds = {r[0] for r in query(db, "SELECT seed FROM segments")}
    assert len(seeds) == 3
