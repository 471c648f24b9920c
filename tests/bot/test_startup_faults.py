"""Start-up on data framechain cannot use: a damaged or unreadable database, a read-only data
folder. Each stops start-up with one sentence saying what it is, and nothing is overwritten."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import EXIT_FAILURE, main
from bot.disk import writable_problem
from bot.store import DatabaseUnusable, Store
from bot.store.connection import unusable

NOBODY = 65534


def as_unprivileged(function: Callable[[], Any]) -> Any:
    """``function()`` in a forked child running as an ordinary user (root ignores permissions)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            result: Any = function()
        except BaseException as exc:  # pragma: no cover - reported to the parent
            result = exc
        with os.fdopen(write, "wb") as out:
            pickle.dump(result, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    result = pickle.loads(data)
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged child can reach (pytest's own tmp dirs are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="framechain-faults-"))
    folder.chmod(0o755)
    yield folder
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o755)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def write_run_config(folder: Path, data_dir: Path) -> Path:
    path = folder / "framechain.toml"
    path.write_text(f'data_dir = "{data_dir}"\n[generation]\nbackend = "preview"\n')
    path.chmod(0o644)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def make_database(path: Path) -> None:
    store = await Store.open(path)
    await store.create_session(platform="telegram", chat_id="1", thread_id="", owner_id="2", settings={})
    await store.close()
    with sqlite3.connect(path) as db:  # back to a single file, as after a clean shutdown
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def damage(path: Path) -> None:
    """Overwrite everything after the 100-byte header: pages, schema and rows are garbage."""
    data = bytearray(path.read_bytes())
    data[100:] = b"\x55" * (len(data) - 100)
    path.write_bytes(bytes(data))


def test_a_damaged_database_stops_start_up_and_is_left_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    asyncio.run(make_database(data / "framechain.db"))
    damage(data / "framechain.db")
    before = digest(data / "framechain.db")
    monkeypatch.setenv("FRAMECHAIN_TELEGRAM_TOKEN", "123:secret-token-value")
    code = main(["run", "--config", str(write_run_config(tmp_path, data))])
    err = capsys.readouterr().err
    assert code == EXIT_FAILURE
    assert "damaged" in err and "left it untouched" in err and str(data / "framechain.db") in err
    assert "Traceback" not in err and "secret-token-value" not in err
    assert digest(data / "framechain.db") == before
    assert sorted(p.name for p in data.iterdir()) == ["framechain.db"]  # no journal, no new file


async def test_a_truncated_database_is_refused_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    await make_database(path)
    path.write_bytes(path.read_bytes()[:1500])
    before = digest(path)
    with pytest.raises(DatabaseUnusable, match="damaged"):
        await Store.open(path)
    assert digest(path) == before


async def test_a_folder_where_the_database_belongs(tmp_path: Path) -> None:
    (tmp_path / "fc.db").mkdir()
    with pytest.raises(DatabaseUnusable, match="is a folder, not a database file"):
        await Store.open(tmp_path / "fc.db")


def test_a_read_only_data_folder_is_said_to_be_read_only(shared_dir: Path) -> None:
    data = shared_dir / "data"
    data.mkdir()
    data.chmod(0o555)
    problem = as_unprivileged(lambda: writable_problem(data))
    assert problem is not None and "is not writable" in problem and str(data) in problem
    assert "corrupt" not in problem and "damaged" not in problem
    data.chmod(0o777)
    assert as_unprivileged(lambda: writable_problem(data)) is None


def test_framechain_run_on_a_read_only_data_folder(shared_dir: Path) -> None:
    data = shared_dir / "data"
    data.mkdir()
    config = write_run_config(shared_dir, data)
    data.chmod(0o555)

    def run() -> tuple[int, str]:
        import contextlib
        import io

        os.environ["FRAMECHAIN_TELEGRAM_TOKEN"] = "123:secret-token-value"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["run", "--config", str(config)])
        return code, err.getvalue()

    code, err = as_unprivileged(run)
    assert code == EXIT_FAILURE
    assert "is not writable" in err and "Permission denied" in err and "database" in err
    assert "not a usable SQLite database" not in err and "Traceback" not in err


def test_a_read_only_database_file_is_not_called_damaged(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    sqlite3.connect(path).close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("CREATE TABLE t (a)")
    db.close()
    error = unusable(path, caught.value)
    assert isinstance(error, DatabaseUnusable)
    assert "read-only" in str(error) and "not damaged" in str(error)
