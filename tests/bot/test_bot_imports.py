"""The bot process never imports torch, diffusers or transformers (only worker processes do)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import bot.app, bot.cli, bot.core, bot.dispatcher, bot.render_cli, bot.service, bot.store, bot.worker_client
import bot.discord_adapter, bot.telegram_adapter
import worker.video, worker.files  # what the bot uses to join and fit videos
app = bot.app.build_front_ends  # the whole bootstrap path, front ends included
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "accelerate") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_bot_modules_do_not_import_the_model_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
