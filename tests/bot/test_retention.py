"""storage.retention_days: the media of sessions over or abandoned longer ago are removed
(finals kept if configured), by ``prune`` and by ``framechain prune``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from bot.conversation import delivery
from bot.retention import DAY, prune
from bot.store import SessionState, Store
from shared.config import Config, StorageConfig

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_000_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def media(config: Config, session_id: str, *names: str) -> Path:
    folder = config.data_dir / "sessions" / session_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x" * 1000)
    return folder


async def make_sessions(store: Store, config: Config, clock: Clock) -> None:
    """Sessions last changed 40 days before NOW, and one changed yesterday."""
    clock.now = NOW - 40 * DAY
    done = await store.create_session(platform="telegram", chat_id="1", owner_id="1", session_id="done")
    await store.update_session(done.id, state=SessionState.FINISHED, final_video=str(config.data_dir / "f.mp4"))
    await store.record_session_posted(done.id, delivery.FINAL, ["9"])
    unsent = await store.create_session(platform="telegram", chat_id="2", owner_id="2", session_id="unsent")
    await store.update_session(unsent.id, state=SessionState.FINISHED, final_video=str(config.data_dir / "f.mp4"))
    await store.create_session(
        platform="telegram", chat_id="3", owner_id="3", session_id="idle", state=SessionState.AWAITING_PROMPT
    )
    cancelled = await store.create_session(platform="telegram", chat_id="4", owner_id="4", session_id="gone")
    await store.update_session(cancelled.id, state=SessionState.CANCELLED)
    await store.create_session(
        platform="telegram", chat_id="5", owner_id="5", session_id="queued", state=SessionState.GENERATING
    )
    clock.now = NOW - DAY
    await store.create_session(
        platform="telegram", chat_id="6", owner_id="6", session_id="recent", state=SessionState.AWAITING_PROMPT
    )
    clock.now = NOW
    media(config, "done", "picture-1.png", "seg001-take1.mp4", "seg001-take1.png", "final.mp4", "final-fit.mp4")
    for name in ("unsent", "idle", "gone", "queued", "recent"):
        media(config, name, "picture-1.png", "seg001-take1.mp4")


def with_storage(tmp_path: Path, **storage: object) -> Config:
    return Config(data_dir=tmp_path / "data", storage=dataclasses.replace(StorageConfig(), **storage))  # type: ignore[arg-type]


async def test_prune_removes_what_is_over_or_abandoned_and_keeps_finals(tmp_path: Path) -> None:
    config = with_storage(tmp_path, retention_days=30, keep_finals=True)
    clock = Clock()
    async with Store.open(config.database_path, clock=clock) as store:
        await make_sessions(store, config, clock)
        sessions = config.data_dir / "sessions"
        dry = await prune(store, config, now=NOW, dry_run=True)
        assert sorted(dry.sessions) == ["done", "gone", "idle"] and dry.abandoned == ["idle"]
        assert (sessions / "idle" / "picture-1.png").exists()  # a dry run changes nothing
        assert (await store.get_session("idle")).state is SessionState.AWAITING_PROMPT

        report = await prune(store, config, now=NOW)
        assert sorted(report.sessions) == ["done", "gone", "idle"] and report.abandoned == ["idle"]
        assert report.files == 3 + 2 + 2 and report.bytes == 7000
        assert sorted(p.name for p in (sessions / "done").iterdir()) == ["final-fit.mp4", "final.mp4"]
        assert not (sessions / "gone").exists() and not (sessions / "idle").exists()
        # Abandoned: cancelled quietly, so a late prompt does not look for its files.
        assert (await store.get_session("idle")).state is SessionState.CANCELLED
        # Untouched: a final still to be delivered, a session with work pending, a recent one.
        for name in ("unsent", "queued", "recent"):
            assert (sessions / name / "seg001-take1.mp4").exists()
        assert (await prune(store, config, now=NOW)).sessions == []


async def test_prune_without_keeping_finals_and_with_retention_off(tmp_path: Path) -> None:
    clock = Clock()
    config = with_storage(tmp_path, retention_days=30, keep_finals=False)
    async with Store.open(config.database_path, clock=clock) as store:
        await make_sessions(store, config, clock)
        assert (await prune(store, dataclasses.replace(config, storage=StorageConfig()), now=NOW)).sessions == []
        await prune(store, config, now=NOW)
        assert not (config.data_dir / "sessions" / "done").exists()


async def test_framechain_prune(tmp_path: Path) -> None:
    config_path = tmp_path / "c.toml"
    config_path.write_text(f'data_dir = "{tmp_path / "data"}"\n[storage]\nretention_days = 30\n')
    config = with_storage(tmp_path, retention_days=30)
    clock = Clock()
    async with Store.open(config.database_path, clock=clock) as store:
        await make_sessions(store, config, clock)
    # NOW is long ago: every old session is due by the real clock too.
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "prune", "--config", str(config_path), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    dry = run("--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would be ") and "idle (abandoned)" in dry.stdout
    assert (config.data_dir / "sessions" / "idle").exists()
    done = run()
    assert done.returncode == 0, done.stderr
    assert "sessions pruned" in done.stdout and not (config.data_dir / "sessions" / "idle").exists()
