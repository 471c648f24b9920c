"""A Ctrl-C in the terminal of `framechain run` (or `make demo`) reaches the whole process group:
the worker leaves it to its parent, which stops it (Shutdown, then a kill), and prints no
KeyboardInterrupt traceback of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bot.worker_client import worker_command
from tests.bot.service_harness import write_config

ROOT = Path(__file__).resolve().parents[2]


def test_a_ctrl_c_is_left_to_the_parent(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        worker_command(device="cpu", config_path=write_config(tmp_path)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert b'"ready"' in proc.stdout.readline()  # loaded and serving
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # still serving: the parent decides
        proc.stdin.close()  # what the parent's stop does after its Shutdown
        proc.wait(timeout=30)
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert proc.returncode == 0
        assert b"KeyboardInterrupt" not in err and b"Traceback" not in err, err.decode()
