"""The SQLite store against real database files."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.store import (
    MIGRATIONS,
    Conflict,
    NotFound,
    Platform,
    SchemaTooNew,
    SegmentStatus,
    SessionState,
    Store,
    StoreError,
    create_database_at_version,
)

ROOT = Path(__file__).resolve().parents[2]


def counting_clock(start: float = 1000.0) -> Callable[[], float]:
    ticks = itertools.count(start)
    return lambda: float(next(ticks))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "fc.db", clock=counting_clock()) as opened:
        yield opened


def schema(path: Path) -> dict[str, Any]:
    """Everything about the schema that matters, independent of how the SQL text was written."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out: dict[str, Any] = {}
        for table in tables:
            indexes = {}
            for index in db.execute(f"PRAGMA index_list({table})").fetchall():
                name = index[1] if not index[1].startswith("sqlite_autoindex") else f"auto:{index[2:]}"
                indexes[name] = (index[2:], db.execute(f"PRAGMA index_info({index[1]})").fetchall())
            out[table] = {
                "columns": db.execute(f"PRAGMA table_info({table})").fetchall(),
                "foreign_keys": db.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
                "indexes": dict(sorted(indexes.items())),
            }
    return out


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


# Rows written with the SQL of schema version k, to check an upgrade from k keeps them.
# When migration k+1 lands, add an entry for version k+1 here.
def _rows_v1(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO sessions (id, platform, chat_id, thread_id, owner_id, state, settings, start_image,"
        " first_image, created_at, updated_at) VALUES ('s1', 'telegram', '-100', '', '7', 'reviewing',"
        " '{\"fps\": 16}', 'a.png', 'first.png', 1.0, 2.0)"
    )
    db.execute(
        "INSERT INTO segments (session_id, idx, attempt, prompt, status, queue_seq, params, posted,"
        " created_at, updated_at) VALUES ('s1', 0, 1, 'walk', 'queued', 1, '{\"frames\": 81}',"
        " '{\"progress\": 5}', 1.0, 1.0)"
    )


def _rows_v2(db: sqlite3.Connection) -> None:
    _rows_v1(db)
    db.execute("UPDATE segments SET caption = 'Segment 1'")
    db.execute("UPDATE sessions SET final_caption = 'Here it is'")


def _rows_v4(db: sqlite3.Connection) -> None:
    _rows_v2(db)
    db.execute("UPDATE segments SET drift = '{\"luma\": 0.5}'")


SAMPLE_ROWS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _rows_v1, 2: _rows_v2, 4: _rows_v4}


# -- migrations ------------------------------------------------------------------------------


async def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "fc.db"
    async with Store.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    assert user_version(path) == len(MIGRATIONS)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("version", range(len(MIGRATIONS) + 1))
async def test_upgrade_from_each_earlier_version(tmp_path: Path, version: int) -> None:
    fresh = tmp_path / "fresh.db"
    await create_database_at_version(fresh, len(MIGRATIONS))

    old = tmp_path / "old.db"
    await create_database_at_version(old, version)
    assert user_version(old) == version
    if version in SAMPLE_ROWS:
        with sqlite3.connect(old) as db:
            SAMPLE_ROWS[version](db)

    async with Store.open(old) as store:
        assert store.schema_version == len(MIGRATIONS)
        if version in SAMPLE_ROWS:
            session = await store.get_session("s1")
            assert (session.platform, session.chat_id, session.state) == ("telegram", "-100", "reviewing")
            assert session.settings == {"fps": 16}
            (segment,) = await store.list_segments("s1")
            assert (segment.prompt, segment.params, segment.posted) == (
                "walk",
                {"frames": 81},
                {"progress": 5},
            )
        # The upgraded database works like a fresh one.
        new = await store.create_session(platform="cli", chat_id="x", owner_id="me")
        await store.add_segment(new.id, idx=0, prompt="go")
    assert user_version(old) == len(MIGRATIONS)
    assert schema(old) == schema(fresh)


async def test_upgrade_to_v2_counts_earlier_posts_as_complete(tmp_path: Path) -> None:
    """Before v2 a post's ids were recorded only once all of it was sent: a recorded video
    means its frame went too (or was never going to), so a restart must not send a frame."""
    path = tmp_path / "v1.db"
    await create_database_at_version(path, 1)
    with sqlite3.connect(path) as db:
        _rows_v1(db)
        db.execute(
            "INSERT INTO segments (session_id, idx, attempt, prompt, status, queue_seq, posted,"
            " created_at, updated_at) VALUES ('s1', 1, 1, 'run', 'done', 2, '{\"video\": 9}', 1.0, 1.0)"
        )
    async with Store.open(path) as store:
        posted = [s.posted for s in await store.list_segments("s1")]
        assert posted == [{"progress": 5}, {"video": 9, "frame": ""}]
        assert [s.caption for s in await store.list_segments("s1")] == [None, None]
        assert (await store.get_session("s1")).final_caption is None


async def test_drift_figures_are_kept_per_take(store: Store) -> None:
    session = await store.create_session(platform="telegram", chat_id=1, owner_id=1)
    seg = await store.add_segment(session.id, idx=0, prompt="p")
    assert seg.drift is None
    figures = {"luma": 0.52, "head_dx": -1.5}
    assert (await store.update_segment(seg.id, drift=figures)).drift == figures
    assert (await store.get_segment(seg.id)).drift == figures
    assert (await store.update_segment(seg.id, caption="c")).drift == figures
    assert (await store.update_segment(seg.id, drift=None)).drift is None


async def test_captions_are_kept(store: Store) -> None:
    session = await store.create_session(platform="telegram", chat_id=1, owner_id=1)
    seg = await store.add_segment(session.id, idx=0, prompt="p")
    assert seg.caption is None and session.final_caption is None
    assert (await store.update_segment(seg.id, caption="Segment 1 · take 1")).caption == "Segment 1 · take 1"
    assert (await store.get_segment(seg.id)).caption == "Segment 1 · take 1"
    assert (await store.update_session(session.id, final_caption="Your video")).final_caption == "Your video"
    assert (await store.update_session(session.id, state=SessionState.FINISHED)).final_caption == "Your video"


async def test_a_message_recorded_as_gone_is_never_found_by_a_reaction(store: Store) -> None:
    session = await store.create_session(platform="telegram", chat_id=1, owner_id=1)
    seg = await store.add_segment(session.id, idx=0, prompt="p")
    await store.record_posted(seg.id, "progress", "55")
    assert (await store.find_segment_by_message("telegram", 1, "55")) is not None
    await store.record_posted(seg.id, "progress", None)
    assert (await store.get_segment(seg.id)).posted == {"progress": None}
    assert await store.find_segment_by_message("telegram", 1, "55") is None
    assert await store.find_segment_by_message("telegram", 1, "None") is None


async def test_reopening_a_current_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path) as store:
        session = await store.create_session(platform="discord", chat_id=1, owner_id=2)
    before = schema(path)
    async with Store.open(path) as store:
        assert (await store.get_session(session.id)).owner_id == "2"
    assert schema(path) == before


async def test_refuses_a_database_from_a_newer_framechain(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE future (x)")
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(SchemaTooNew) as caught:
        await Store.open(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {len(MIGRATIONS) + 1}" in message
    assert f"up to {len(MIGRATIONS)}" in message
    # Nothing was written to it: still the rollback journal, still the newer version.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert user_version(path) == len(MIGRATIONS) + 1


async def test_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    path.write_bytes(b"this is not sqlite, just some text long enough to have a header" * 20)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        await Store.open(path)


async def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    broken = (*MIGRATIONS, "CREATE TABLE half (a); INSERT INTO half VALUES (1); SELEC nonsense;")
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(path, migrations=broken)
    assert user_version(path) == len(MIGRATIONS)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchall() == []
    # The good migrations stuck; the database still opens with the real list.
    async with Store.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)


async def test_migration_scripts_may_hold_triggers_and_semicolons_in_strings(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    extra = """
        CREATE TABLE notes (body TEXT);  -- a comment; with a semicolon
        CREATE TRIGGER notes_mark AFTER INSERT ON notes BEGIN
            UPDATE notes SET body = body || ';seen' WHERE rowid = new.rowid;
        END;
        INSERT INTO notes VALUES ('a;b');
    """
    async with Store.open(path, migrations=(*MIGRATIONS, extra)) as store:
        assert store.schema_version == len(MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT body FROM notes").fetchall() == [("a;b;seen",)]


async def test_two_stores_migrating_the_same_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    stores = await asyncio.gather(*(Store.open(path) for _ in range(4)))
    try:
        assert {s.schema_version for s in stores} == {len(MIGRATIONS)}
    finally:
        for s in stores:
            await s.close()
    assert user_version(path) == len(MIGRATIONS)


async def test_schema_accepts_every_enum_value(store: Store) -> None:
    # Migration 1 spells the enum values out; this keeps the two in step.
    for platform in Platform:
        for state in SessionState:
            session = await store.create_session(platform=platform, chat_id="c", owner_id="o", state=state)
            assert (session.platform, session.state) == (platform, state)
    for status in SegmentStatus:
        segment = await store.add_segment(session.id, idx=0, prompt="p", status=status)
        assert segment.status is status


# -- round trips -----------------------------------------------------------------------------


async def test_session_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path, clock=counting_clock(1000.0)) as store:
        created = await store.create_session(
            platform="telegram",
            chat_id=-1001234567890,
            thread_id=42,
            owner_id=987654321,
            state=SessionState.AWAITING_PROMPT,
            settings={"frames": 81, "prompt": "ночь, 夜", "nested": {"a": [1, 2.5, None]}},
            first_image=tmp_path / "first.png",
            session_id="abc123",
        )
    async with Store.open(path, clock=counting_clock(2000.0)) as store:
        loaded = await store.get_session("abc123")
        assert loaded == created
        assert loaded.id == "abc123"
        assert loaded.platform is Platform.TELEGRAM
        assert (loaded.chat_id, loaded.thread_id, loaded.owner_id) == ("-1001234567890", "42", "987654321")
        assert loaded.state is SessionState.AWAITING_PROMPT
        assert loaded.settings == {"frames": 81, "prompt": "ночь, 夜", "nested": {"a": [1, 2.5, None]}}
        assert loaded.first_image == loaded.start_image == tmp_path / "first.png"
        assert loaded.final_video is None
        assert loaded.posted == {}
        assert loaded.created_at == loaded.updated_at == 1000.0

        updated = await store.update_session(
            "abc123",
            state=SessionState.FINISHED,
            settings={"frames": 33},
            start_image=tmp_path / "hand_off.png",
            first_image="elsewhere.png",
            final_video=tmp_path / "final.mp4",
        )
        assert updated == await store.get_session("abc123")
        assert updated.state is SessionState.FINISHED
        assert updated.settings == {"frames": 33}
        assert updated.start_image == tmp_path / "hand_off.png"
        assert updated.first_image == Path("elsewhere.png")
        assert updated.final_video == tmp_path / "final.mp4"
        assert (updated.created_at, updated.updated_at) == (1000.0, 2000.0)

        # Unset leaves a column alone; None clears it.
        cleared = await store.update_session("abc123", final_video=None)
        assert cleared.final_video is None
        assert cleared.start_image == tmp_path / "hand_off.png"
        assert cleared.state is SessionState.FINISHED

        with pytest.raises(NotFound):
            await store.get_session("nope")
        with pytest.raises(NotFound):
            await store.update_session("nope", state=SessionState.CANCELLED)


async def test_session_without_thread_and_generated_id(store: Store) -> None:
    session = await store.create_session(platform=Platform.DISCORD, chat_id="1", owner_id="2")
    assert session.thread_id == ""
    assert len(session.id) == 32 and int(session.id, 16) >= 0
    assert session.state is SessionState.AWAITING_IMAGE
    assert session.settings == {} and session.start_image is None
    with pytest.raises(ValueError):
        await store.create_session(platform="irc", chat_id="1", owner_id="2")


async def test_segment_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path, clock=counting_clock(1000.0)) as store:
        session = await store.create_session(platform="cli", chat_id="term", owner_id="me")
        params = {"width": 832, "height": 480, "frames": 81, "steps": 20, "guidance": 3.5, "shift": 8.0}
        added = await store.add_segment(
            session.id,
            idx=3,
            prompt="a cat walks, 猫",
            negative_prompt="色调艳丽",
            seed=2**63 - 1,
            params=params,
            start_image=tmp_path / "start.png",
        )
    async with Store.open(path, clock=counting_clock(2000.0)) as store:
        loaded = await store.get_segment(added.id)
        assert loaded == added
        assert (loaded.session_id, loaded.idx, loaded.attempt) == (session.id, 3, 1)
        assert (loaded.prompt, loaded.negative_prompt, loaded.seed) == (
            "a cat walks, 猫",
            "色调艳丽",
            2**63 - 1,
        )
        assert loaded.params == params
        assert loaded.status is SegmentStatus.QUEUED
        assert loaded.start_image == tmp_path / "start.png"
        assert (loaded.video, loaded.last_frame, loaded.error) == (None, None, None)
        assert (loaded.tries, loaded.queue_seq) == (0, 1)
        assert loaded.enqueued_at == loaded.created_at == loaded.updated_at == 1001.0
        assert (loaded.started_at, loaded.finished_at) == (None, None)
        assert loaded.posted == {}

        updated = await store.update_segment(
            added.id,
            status=SegmentStatus.FAILED,
            prompt="a dog",
            negative_prompt="",
            seed=None,
            params={"frames": 33},
            start_image="other.png",
            video=tmp_path / "seg.mp4",
            last_frame=tmp_path / "seg.png",
            error="out of memory",
            tries=2,
            started_at=1500.5,
            finished_at=1600.25,
        )
        assert updated == await store.get_segment(added.id)
        assert updated.status is SegmentStatus.FAILED
        assert (updated.prompt, updated.negative_prompt, updated.seed) == ("a dog", "", None)
        assert updated.params == {"frames": 33}
        assert updated.start_image == Path("other.png")
        assert (updated.video, updated.last_frame) == (tmp_path / "seg.mp4", tmp_path / "seg.png")
        assert (updated.error, updated.tries) == ("out of memory", 2)
        assert (updated.started_at, updated.finished_at) == (1500.5, 1600.25)
        assert (updated.queue_seq, updated.enqueued_at, updated.created_at) == (1, 1001.0, 1001.0)
        assert updated.updated_at == 2000.0

        unchanged = await store.update_segment(added.id, error=None)
        assert unchanged.error is None and unchanged.video == tmp_path / "seg.mp4"

        with pytest.raises(NotFound):
            await store.get_segment(9999)
        with pytest.raises(NotFound):
            await store.update_segment(9999, prompt="x")


async def test_add_segment_attempts_and_errors(store: Store) -> None:
    session = await store.create_session(platform="cli", chat_id="c", owner_id="o")
    first = await store.add_segment(session.id, idx=0, prompt="p")
    second = await store.add_segment(session.id, idx=0, prompt="p again")
    other = await store.add_segment(session.id, idx=1, prompt="next")
    assert [first.attempt, second.attempt, other.attempt] == [1, 2, 1]
    with pytest.raises(Conflict):
        await store.add_segment(session.id, idx=0, attempt=2, prompt="duplicate")
    explicit = await store.add_segment(session.id, idx=0, attempt=7, prompt="p")
    assert explicit.attempt == 7
    with pytest.raises(NotFound):
        await store.add_segment("missing", idx=0, prompt="p")
    with pytest.raises(ValueError, match="seed"):
        await store.add_segment(session.id, idx=2, prompt="p", seed=2**64 - 1)
    done = await store.add_segment(session.id, idx=2, prompt="p", status=SegmentStatus.DONE)
    assert done.enqueued_at is None
    assert [s.id for s in await store.list_segments(session.id)] == [
        first.id,
        second.id,
        explicit.id,
        other.id,
        done.id,
    ]
    assert [s.id for s in await store.list_segments(session.id, {SegmentStatus.DONE})] == [done.id]
    assert await store.list_segments(session.id, ()) == []


# -- queries ---------------------------------------------------------------------------------


async def test_find_active_session(store: Store) -> None:
    old = await store.create_session(platform="discord", chat_id=10, thread_id=20, owner_id=1)
    newer = await store.create_session(platform="discord", chat_id=10, thread_id=20, owner_id=1)
    other_owner = await store.create_session(platform="discord", chat_id=10, thread_id=20, owner_id=2)
    no_thread = await store.create_session(platform="telegram", chat_id=10, owner_id=1)
    finished = await store.create_session(platform="discord", chat_id=10, thread_id=99, owner_id=1)
    await store.update_session(finished.id, state=SessionState.FINISHED)

    assert (await store.find_active_session("discord", 10, 20, 1)) == newer
    assert (await store.find_active_session("discord", "10", "20", "2")) == other_owner
    assert (await store.find_active_session("discord", 10, 20)) == other_owner  # newest of anyone's
    assert (await store.find_active_session("telegram", 10, None, 1)) == no_thread
    assert (await store.find_active_session("telegram", 10, "", 1)) == no_thread
    assert await store.find_active_session("discord", 10, None, 1) is None
    assert await store.find_active_session("discord", 10, 99, 1) is None
    assert await store.find_active_session("telegram", 10, 20, 1) is None

    await store.update_session(newer.id, state=SessionState.CANCELLED)
    assert (await store.find_active_session("discord", 10, 20, 1)) == old

    active = await store.list_active_sessions()
    assert [s.id for s in active] == [old.id, other_owner.id, no_thread.id]
    assert [s.id for s in await store.list_active_sessions(Platform.TELEGRAM)] == [no_thread.id]


async def test_resumable_jobs_keep_their_original_order_across_sessions(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path) as store:
        a = await store.create_session(platform="discord", chat_id=1, owner_id=1)
        b = await store.create_session(platform="telegram", chat_id=2, owner_id=2)
        c = await store.create_session(platform="cli", chat_id=3, owner_id=3)
        a0 = await store.add_segment(a.id, idx=0, prompt="a0")
        b0 = await store.add_segment(b.id, idx=0, prompt="b0")
        c0 = await store.add_segment(c.id, idx=0, prompt="c0")
        a1 = await store.add_segment(a.id, idx=1, prompt="a1")
        b1 = await store.add_segment(b.id, idx=1, prompt="b1")
        c1 = await store.add_segment(c.id, idx=1, prompt="c1")
        b2 = await store.add_segment(b.id, idx=2, prompt="b2")

        # a0 ran to completion; b0 was running at the crash; c is cancelled; b1 failed once and
        # was put back in the queue: it keeps its original place.
        await store.start_segment(a0.id)
        await store.finish_segment(a0.id, video="a0.mp4", last_frame="a0.png")
        await store.start_segment(b0.id)
        await store.cancel_session(c.id)
        await store.start_segment(b1.id)
        await store.fail_segment(b1.id, "worker died")
        await store.requeue_segment(b1.id)
        # A job of a finished session is not resumed either.
        await store.update_session(a.id, state=SessionState.FINISHED)
        a2 = await store.add_segment(a.id, idx=2, prompt="a2")
        await store.update_session(a.id, state=SessionState.GENERATING)

    # "Crash" and restart.
    async with Store.open(path) as store:
        jobs = await store.list_resumable_jobs()
        assert [j.id for j in jobs] == [b0.id, a1.id, b1.id, b2.id, a2.id]
        assert [j.status for j in jobs] == [
            SegmentStatus.RUNNING,
            SegmentStatus.QUEUED,
            SegmentStatus.QUEUED,
            SegmentStatus.QUEUED,
            SegmentStatus.QUEUED,
        ]
        assert [j.queue_seq for j in jobs] == sorted(j.queue_seq for j in jobs)
        assert (await store.get_segment(c0.id)).status is SegmentStatus.CANCELLED
        assert (await store.get_segment(c1.id)).status is SegmentStatus.CANCELLED
        assert await store.count_pending_jobs("telegram", 2) == 3
        assert await store.count_pending_jobs("discord", 1) == 2
        assert await store.count_pending_jobs("cli", 3) == 0

        # The interrupted job can be started again directly; that counts as another try.
        resumed = await store.start_segment(b0.id)
        assert (resumed.status, resumed.tries) == (SegmentStatus.RUNNING, 2)


async def test_dispatcher_transitions_refuse_stale_changes(store: Store) -> None:
    session = await store.create_session(platform="cli", chat_id="c", owner_id="o")
    seg = await store.add_segment(session.id, idx=0, prompt="p")
    with pytest.raises(Conflict, match="queued, expected running"):
        await store.finish_segment(seg.id, video="v.mp4", last_frame="f.png")
    running = await store.start_segment(seg.id)
    assert running.status is SegmentStatus.RUNNING and running.tries == 1
    assert running.started_at is not None and running.finished_at is None

    # The user cancels while it runs; the late result must not revive it.
    _, cancelled = await store.cancel_session(session.id)
    assert [s.id for s in cancelled] == [seg.id]
    assert cancelled[0].status is SegmentStatus.CANCELLED
    with pytest.raises(Conflict):
        await store.finish_segment(seg.id, video="v.mp4", last_frame="f.png")
    with pytest.raises(Conflict):
        await store.start_segment(seg.id)
    with pytest.raises(Conflict):
        await store.fail_segment(seg.id, "late")
    with pytest.raises(NotFound):
        await store.start_segment(12345)

    again = await store.add_segment(session.id, idx=0, prompt="p")
    await store.start_segment(again.id)
    failed = await store.fail_segment(again.id, "out of memory")
    assert (failed.status, failed.error) == (SegmentStatus.FAILED, "out of memory")
    assert failed.finished_at is not None
    requeued = await store.requeue_segment(again.id)
    assert requeued.status is SegmentStatus.QUEUED and requeued.queue_seq == again.queue_seq
    restarted = await store.start_segment(again.id)
    assert (restarted.tries, restarted.error, restarted.finished_at) == (2, None, None)
    done = await store.finish_segment(again.id, video=Path("v.mp4"), last_frame=Path("f.png"))
    assert (done.status, done.video, done.last_frame) == (SegmentStatus.DONE, Path("v.mp4"), Path("f.png"))


async def test_record_posted_merges_keys(store: Store) -> None:
    session = await store.create_session(platform="discord", chat_id=1, owner_id=1)
    seg = await store.add_segment(session.id, idx=0, prompt="p")
    assert (await store.record_posted(seg.id, "progress", 1111)).posted == {"progress": 1111}
    await store.record_posted(seg.id, "video", 2**62 + 5)
    await store.record_posted(seg.id, "progress", 3333)  # overwrite one key only
    await store.record_posted(seg.id, "parts.of final", [1, 2, "x"])
    assert (await store.get_segment(seg.id)).posted == {
        "progress": 3333,
        "video": 2**62 + 5,
        "parts.of final": [1, 2, "x"],
    }

    # Many tasks at once, each adding its own key: none is lost.
    await asyncio.gather(*(store.record_posted(seg.id, f"k{i}", i) for i in range(40)))
    posted = (await store.get_segment(seg.id)).posted
    assert {k: v for k, v in posted.items() if k.startswith("k")} == {f"k{i}": i for i in range(40)}
    assert posted["video"] == 2**62 + 5

    assert (await store.record_session_posted(session.id, "status", 77)).posted == {"status": 77}
    await store.record_session_posted(session.id, "final", "abc")
    assert (await store.get_session(session.id)).posted == {"status": 77, "final": "abc"}

    with pytest.raises(NotFound):
        await store.record_posted(999, "video", 1)
    with pytest.raises(NotFound):
        await store.record_session_posted("missing", "status", 1)
    for bad in ("", 'a"b', "a\\b"):
        with pytest.raises(ValueError):
            await store.record_posted(seg.id, bad, 1)


# -- combined writes -------------------------------------------------------------------------


async def _generated(store: Store, session_id: str, idx: int, name: str) -> int:
    seg = await store.add_segment(session_id, idx=idx, prompt=name)
    await store.start_segment(seg.id)
    await store.finish_segment(seg.id, video=f"{name}.mp4", last_frame=f"{name}.png")
    return seg.id


async def test_approve_and_undo_move_the_hand_off_image(store: Store) -> None:
    session = await store.create_session(
        platform="telegram", chat_id=5, owner_id=5, first_image="first.png", state=SessionState.GENERATING
    )
    s0 = await _generated(store, session.id, 0, "s0")
    after, approved = await store.approve_segment(s0)
    assert approved.status is SegmentStatus.APPROVED
    assert after.start_image == Path("s0.png") and after.state is SessionState.AWAITING_PROMPT

    with pytest.raises(Conflict, match="approved, not done"):
        await store.approve_segment(s0)

    # Segment 1: first attempt rejected (regenerate), second approved.
    s1a = await _generated(store, session.id, 1, "s1a")
    rejected = await store.reject_segment(s1a)
    assert rejected.status is SegmentStatus.REJECTED
    with pytest.raises(Conflict):
        await store.approve_segment(s1a)
    s1b = await _generated(store, session.id, 1, "s1b")
    assert (await store.get_segment(s1b)).attempt == 2
    after, _ = await store.approve_segment(s1b, state=SessionState.ASSEMBLING)
    assert after.start_image == Path("s1b.png") and after.state is SessionState.ASSEMBLING

    queued = await store.add_segment(session.id, idx=2, prompt="not yet")
    with pytest.raises(Conflict, match="queued, not done"):
        await store.approve_segment(queued.id)
    # A second "done" at an idx that is already approved cannot be approved too.
    stray = await store.add_segment(session.id, idx=1, prompt="stray", status=SegmentStatus.DONE)
    await store.update_segment(stray.id, last_frame="stray.png")
    with pytest.raises(Conflict, match="already approved"):
        await store.approve_segment(stray.id)
    no_frame = await store.add_segment(session.id, idx=3, prompt="x", status=SegmentStatus.DONE)
    with pytest.raises(Conflict, match="no last frame"):
        await store.approve_segment(no_frame.id)

    assert [s.id for s in await store.approved_segments(session.id)] == [s0, s1b]
    assert (await store.last_approved(session.id)).id == s1b  # type: ignore[union-attr]

    after, undone = await store.undo_last_approved(session.id)
    assert undone is not None and undone.id == s1b and undone.status is SegmentStatus.REJECTED
    assert after.start_image == Path("s0.png") and after.state is SessionState.AWAITING_PROMPT
    after, undone = await store.undo_last_approved(session.id, state=SessionState.REVIEWING)
    assert undone is not None and undone.id == s0
    assert after.start_image == Path("first.png") and after.state is SessionState.REVIEWING
    after, undone = await store.undo_last_approved(session.id)
    assert undone is None and after == await store.get_session(session.id)
    assert after.state is SessionState.REVIEWING  # nothing to undo: nothing changed
    assert await store.approved_segments(session.id) == []
    assert await store.last_approved(session.id) is None


async def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    session = await store.create_session(platform="cli", chat_id="c", owner_id="o", first_image="a.png")
    seg = await store.add_segment(session.id, idx=0, prompt="p")
    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction():
            await store.update_segment(seg.id, status=SegmentStatus.APPROVED)
            await store.update_session(session.id, start_image="b.png")
            async with store.transaction():  # nested: joins the outer one
                await store.record_posted(seg.id, "video", 1)
            raise RuntimeError("boom")
    assert (await store.get_segment(seg.id)).status is SegmentStatus.QUEUED
    assert (await store.get_segment(seg.id)).posted == {}
    assert (await store.get_session(session.id)).start_image == Path("a.png")

    # A task cancelled inside a transaction rolls it back too, and the store stays usable.
    entered = asyncio.Event()

    async def slow_writer() -> None:
        async with store.transaction():
            await store.update_session(session.id, state=SessionState.FINISHED)
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(slow_writer())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.get_session(session.id)).state is SessionState.AWAITING_IMAGE

    async with store.transaction():
        await store.update_session(session.id, state=SessionState.GENERATING)
        await store.add_segment(session.id, idx=0, prompt="p2")
    assert (await store.get_session(session.id)).state is SessionState.GENERATING
    assert len(await store.list_segments(session.id)) == 2


async def test_other_tasks_never_see_a_transaction_half_done(store: Store) -> None:
    session = await store.create_session(platform="cli", chat_id="c", owner_id="o")
    halfway = asyncio.Event()
    order: list[str] = []

    async def writer() -> None:
        async with store.transaction():
            await store.update_session(session.id, state=SessionState.GENERATING)
            halfway.set()
            await asyncio.sleep(0.05)
            await store.update_session(session.id, start_image="x.png")
            order.append("committed")

    async def reader() -> None:
        await halfway.wait()
        seen = await store.get_session(session.id)
        order.append("read")
        assert (seen.state, seen.start_image) == (SessionState.GENERATING, Path("x.png"))

    await asyncio.gather(writer(), reader())
    assert order == ["committed", "read"]


async def test_deleting_a_session_cascades_to_its_segments(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path) as one, Store.open(path) as two:
        keep = await one.create_session(platform="cli", chat_id="c", owner_id="o")
        drop = await one.create_session(platform="cli", chat_id="c", owner_id="o")
        kept = await one.add_segment(keep.id, idx=0, prompt="p")
        gone = [await one.add_segment(drop.id, idx=i, prompt="p") for i in range(3)]
        await two.delete_session(drop.id)  # foreign keys are on in every connection
        for seg in gone:
            with pytest.raises(NotFound):
                await one.get_segment(seg.id)
        assert (await one.get_segment(kept.id)).session_id == keep.id
        with pytest.raises(NotFound):
            await two.delete_session(drop.id)
        with pytest.raises(NotFound):
            await two.add_segment(drop.id, idx=0, prompt="orphan")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


# -- concurrency and crashes -----------------------------------------------------------------


async def test_concurrent_writers_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    per_store, segments_each = 20, 3

    async def user_flow(store: Store, name: str) -> str:
        session = await store.create_session(platform="cli", chat_id=name, owner_id=name, first_image="f.png")
        for idx in range(segments_each):
            seg = await store.add_segment(session.id, idx=idx, prompt=f"{name}-{idx}")
            await store.record_posted(seg.id, "progress", idx)
            await store.start_segment(seg.id)
            await store.finish_segment(seg.id, video=f"{name}-{idx}.mp4", last_frame=f"{name}-{idx}.png")
            await store.record_posted(seg.id, "video", idx + 100)
            await store.approve_segment(seg.id)
            await asyncio.sleep(0)
        async with store.transaction():
            await store.update_session(session.id, state=SessionState.FINISHED, final_video=f"{name}.mp4")
            await store.record_session_posted(session.id, "final", name)
        return session.id

    # Two connections (each with its own thread) contend for the file's write lock, and many
    # tasks share each connection.
    async with Store.open(path, busy_timeout=60) as one, Store.open(path, busy_timeout=60) as two:
        ids = await asyncio.gather(
            *(user_flow(one, f"one{i}") for i in range(per_store)),
            *(user_flow(two, f"two{i}") for i in range(per_store)),
        )
        for session_id in ids:
            session = await one.get_session(session_id)
            chain = await two.approved_segments(session_id)
            assert [s.idx for s in chain] == list(range(segments_each))
            assert session.start_image == chain[-1].last_frame
            assert session.state is SessionState.FINISHED
            assert all(s.posted == {"progress": s.idx, "video": s.idx + 100} for s in chain)
    with sqlite3.connect(path) as db:
        seqs = [r[0] for r in db.execute("SELECT queue_seq FROM segments ORDER BY queue_seq")]
        assert seqs == list(range(1, 2 * per_store * segments_each + 1))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = """
import asyncio, sys
from bot.store import Store

async def main(path: str) -> None:
    async with Store.open(path) as store:
        n = 0
        while True:
            async with store.transaction():
                session = await store.create_session(platform="cli", chat_id="crash", owner_id="child")
                for idx in range(3):
                    await store.add_segment(session.id, idx=idx, prompt="x" * 3000)
                await store.record_session_posted(session.id, "n", n)
            n += 1
            print(n, flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_reopening_after_a_writer_is_killed_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    async with Store.open(path) as store:  # create it first so the child only writes
        pass
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(path),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    parent_ids: list[str] = []
    try:
        # The parent writes through its own store meanwhile: another process on the same file.
        # It closes first, so the killed child is the last one holding the WAL.
        async with Store.open(path) as store:
            committed = 0
            while committed < 40:
                line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
                assert line, "writer exited early"
                committed = int(line)
                session = await store.create_session(platform="cli", chat_id="crash", owner_id="parent")
                parent_ids.append(session.id)
        line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        committed = int(line)
        child.send_signal(signal.SIGKILL)  # mid-transaction, almost surely
        assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    # The child died holding the WAL; the next open must recover from it.
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    async with Store.open(path) as store:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        sessions = await store.list_active_sessions()
        children = [s for s in sessions if s.owner_id == "child"]
        # Every transaction the child reported is there, and each one is whole.
        assert len(children) >= committed
        assert sorted(s.posted["n"] for s in children) == list(range(len(children)))
        for session in children:
            assert [s.idx for s in await store.list_segments(session.id)] == [0, 1, 2]
        assert [s.id for s in sessions if s.owner_id == "parent"] == parent_ids
        # And it takes writes again.
        await store.create_session(platform="cli", chat_id="after", owner_id="parent")


async def test_open_as_awaitable_and_close_twice(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "fc.db")
    await store.create_session(platform="cli", chat_id="c", owner_id="o")
    await store.close()
    await store.close()


async def test_find_segment_by_posted_message(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "fm.db") as store:
        session = await store.create_session(platform="telegram", chat_id=10, owner_id=1)
        other = await store.create_session(platform="telegram", chat_id=11, owner_id=1)
        seg = await store.add_segment(session.id, idx=0, prompt="a")
        seg2 = await store.add_segment(other.id, idx=0, prompt="b")
        await store.record_posted(seg.id, "video", "501")
        await store.record_posted(seg.id, "frame", 502)
        await store.record_posted(seg2.id, "video", "501")
        found = await store.find_segment_by_message("telegram", "10", "502")
        assert found is not None and found.id == seg.id
        found = await store.find_segment_by_message("telegram", 11, 501)
        assert found is not None and found.id == seg2.id
        assert await store.find_segment_by_message("telegram", "10", "999") is None
        assert await store.find_segment_by_message("discord", "10", "501") is None


async def test_a_new_database_is_one_line_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="bot.store")
    async with Store.open(tmp_path / "new.db"):
        pass
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("bot.store")]
    assert len(lines) == 1 and lines[0].startswith("creating the database "), lines
