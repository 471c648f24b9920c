"""`make demo`: `framechain run` with examples/demo.toml serves the web chat alone, on the preview
backend, with no tokens, at the address the Makefile prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shared.config import is_loopback, load_config
from tests.web.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.toml"


def test_the_demo_config_is_the_web_chat_alone_on_the_preview_backend() -> None:
    config = load_config(DEMO, env={"FRAMECHAIN_TELEGRAM_TOKEN": ""})
    assert config.generation.backend == "preview"
    assert config.enabled_platforms == ["web"]
    assert not config.web.tokens and is_loopback(config.web.host_port[0])
    assert config.data_dir.resolve() == ROOT / "out" / "demo-data"
    printed = re.search(r"^DEMO_ADDRESS := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert printed is not None and printed[1] == f"http://{config.web.listen}/"


def test_framechain_run_serves_the_demo_chat_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    text = DEMO.read_text().replace('"../out/demo-data"', f'"{tmp_path / "data"}"').replace(":8765", f":{port}")
    config = tmp_path / "demo.toml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECHAIN_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = ""
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = response.read().decode()
                    break
            except OSError:
                time.sleep(0.05)
        assert '<ol id="messages"' in page
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"web chat: open http://127.0.0.1:{port}/" in output


def test_framechain_check_says_who_can_use_the_web_chat(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    assert main(["check", "--config", str(DEMO)]) == 0
    assert "web:        http://127.0.0.1:8765/ for the local user only (no tokens, loopback)" in capsys.readouterr().out
