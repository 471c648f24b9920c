"""Errors a backend raises, each mapped to a protocol failure kind the dispatcher can act on.

GenerationError            kind = internal
├── BadInput (ValueError)  kind = bad_input   the message names the bad argument
├── OutOfMemory            kind = oom
├── Cancelled              kind = cancelled   the progress callback asked to stop
└── BackendLost                                what the backend drives is gone (a ComfyUI server):
                                               the worker exits, so the dispatcher retries the job
"""

from __future__ import annotations

from shared.protocol import FailureKind


class GenerationError(Exception):
    kind: FailureKind = FailureKind.INTERNAL


class BadInput(GenerationError, ValueError):
    kind = FailureKind.BAD_INPUT


class OutOfMemory(GenerationError):
    kind = FailureKind.OOM


class Cancelled(GenerationError):
    kind = FailureKind.CANCELLED


class BackendLost(GenerationError):
    """Not a result: the worker process ends, and the dispatcher's restart-and-retry takes over."""
