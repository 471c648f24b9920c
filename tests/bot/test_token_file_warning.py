"""``framechain run`` warns at start when the configuration file holding a token can be read by
other users (and never shows the token); a file only its owner can read gets no warning."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bot.test_cli import ROOT, clean_env

WARNING = "can be read by other users"


def run_until_started(config: Path, data: Path) -> str:
    """Start ``framechain run``, stop it once its database exists; its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (data / "framechain.db").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_run_warns_at_start_about_a_token_file_others_can_read(tmp_path: Path, mode: int, warned: bool) -> None:
    data = tmp_path / "data"
    config = tmp_path / "framechain.toml"
    # Telegram that retries quietly (nothing listens on port 9) until the signal stops it.
    config.write_text(
        f'data_dir = "{data}"\n[generation]\nbackend = "preview"\n[workers]\ndevices = ["cpu"]\n'
        '[telegram]\ntoken = "123:SECRET-IN-FILE"\napi_base_url = "http://127.0.0.1:9/bot"\n'
        'api_file_url = "http://127.0.0.1:9/file/bot"\n'
    )
    config.chmod(mode)
    err = run_until_started(config, data)
    assert (WARNING in err) is warned
    assert "SECRET-IN-FILE" not in err
    if warned:
        assert f"chmod 600 {config}" in err
