"""A fix for a cost python-telegram-bot's HTTP stack pays on every request.

httpcore asks ``import sniffio`` each time it sets up a lock or an event (six times a request,
measured); where sniffio is not installed (anyio no longer needs it) every ask is a failed
import that searches ``sys.path`` on disk, ~35 µs of the event loop's time each, ~0.2 ms a
request: a tenth of the loop's work in the flood of ``bench/reliability.py``. Marking the
missing module as absent makes the failure immediate; httpcore then assumes asyncio, as it does
after the slow failure.
"""

from __future__ import annotations

import importlib.util
import sys


def spare_failed_sniffio_imports() -> None:
    """Make ``import sniffio`` fail at once where it is not installed (where it is: nothing)."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # None: "known to be absent"
