"""The framechain command: --help, --version, check, and run's start-up and clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot import __version__

ROOT = Path(__file__).resolve().parents[2]


def framechain(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env or clean_env(),
        **kw,  # type: ignore[call-overload]
    )


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECHAIN_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_help_lists_the_commands() -> None:
    result = framechain("--help")
    assert result.returncode == 0
    for command in ("run", "render", "worker", "check"):
        assert command in result.stdout


def test_version() -> None:
    result = framechain("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"framechain {__version__}"


def test_no_command_prints_help_and_fails() -> None:
    result = framechain()
    assert result.returncode == 2
    assert "usage: framechain" in result.stdout


def test_check_reports_the_defaults() -> None:
    result = framechain("check")
    assert result.returncode == 0, result.stderr
    assert "640x640" in result.stdout and "81 frames at 16 fps" in result.stdout
    assert "none enabled: `framechain run` needs a token, or [web] listen for the web chat" in result.stdout


def test_check_says_who_can_use_the_bot(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[telegram]\ntoken = "1:x"\nadmin_ids = [5]\n[discord]\ntoken = "d"\nopen = true\n')
    result = framechain("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "access:     discord: OPEN, anyone can use your GPU (discord.open = true)" in result.stdout
    assert "access:     telegram: only admins 5; everyone else is refused" in result.stdout


def test_run_with_nothing_enabled_says_so(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    result = framechain("run", "--config", str(config))
    assert result.returncode == 2
    assert "nothing is enabled" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[generation]\nframes = 80\n")
    result = framechain("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "generation.frames" in result.stderr and str(config) in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_opens_the_store_and_exits_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    config = tmp_path / "c.toml"
    # A token enables a platform; the adapters are pointed at a closed local port, so start-up
    # retries quietly without reaching any network until the signal stops it.
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nlog_level = "DEBUG"\n[generation]\nbackend = "preview"\n'
        '[workers]\ndevices = ["cpu"]\n'
        '[telegram]\napi_base_url = "http://127.0.0.1:9/bot"\napi_file_url = "http://127.0.0.1:9/file/bot"\n'
    )
    env = clean_env() | {"FRAMECHAIN_TELEGRAM_TOKEN": "123:abc"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = tmp_path / "data" / "framechain.db"
    deadline = time.monotonic() + 30
    while not db.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert db.exists()
    assert "Traceback" not in err
    assert "123:abc" not in err
    assert "who can use the bot: telegram: CLOSED, nobody can use the bot yet" in err


def test_worker_subcommand_speaks_the_protocol() -> None:
    result = framechain("worker", "--backend", "preview", "--device", "cpu", input="")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()  # nothing but protocol messages on stdout
    assert json.loads(line) | {"info": {}} == {
        "type": "ready", "backend": "preview", "device": "cpu", "preview": True, "info": {},
    }  # fmt: skip


def test_check_warns_about_a_token_file_others_can_read(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[telegram]\ntoken = "123:SECRET-IN-FILE"\n')
    config.chmod(0o644)
    result = framechain("check", "--config", str(config))
    assert result.returncode == 0
    assert "can be read by other users" in result.stderr and "SECRET-IN-FILE" not in result.stderr
    config.chmod(0o600)
    assert "can be read by other users" not in framechain("check", "--config", str(config)).stderr
