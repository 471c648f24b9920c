"""Logging, set up once per process: human-readable lines on stderr.

stdout stays free: the worker uses it for protocol messages only.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", *, process: str = "") -> None:
    name = f"[{process}] " if process else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(name + FORMAT, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chat libraries log every HTTP request at INFO; keep those for DEBUG.
    for noisy in ("httpx", "discord.gateway", "discord.http", "telegram.ext.Updater"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
