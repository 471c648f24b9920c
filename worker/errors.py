"""Errors a backend raises, each mapped to a protocol failure kind the dispatcher can act on.

GenerationError            kind = internal
├── BadInput (ValueError)  kind = bad_input   the message names the bad argument
├── OutOfMemory            kind = oom
├── Cancelled              kind = cancelled   the progress callback asked to stop
└── BackendLost                                what the backend drives is gone (a ComfyUI server):
                                               the worker exits, so the dispatcher retries the job

``is_out_of_memory`` and ``load_failure`` translate foreign exceptions (torch, diffusers, the OS)
into these kinds at the edge.
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


#: Messages of allocation failures that surface as plain RuntimeErrors (cuDNN, cuBLAS, the CPU
#: allocator), not as torch.OutOfMemoryError.
_ALLOC_FAILURES = (
    "out of memory",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "can't allocate memory",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError, MemoryError and allocation failures reported as
    RuntimeError (checked by name and message, so this module needs no torch)."""
    if isinstance(exc, (MemoryError, OutOfMemory)) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(m.lower() in str(exc).lower() for m in _ALLOC_FAILURES)


def load_failure(exc: BaseException) -> tuple[FailureKind, str]:
    """The failure kind and one sentence for an exception raised while a backend loads.

    bad_input: something the operator must fix (a missing, wrong or corrupt file, a missing
    package, a bad option) - restarting the worker cannot help; oom: not enough memory;
    internal: anything else."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, GenerationError):
        return exc.kind, first_line
    if is_out_of_memory(exc):
        return FailureKind.OOM, f"out of memory while loading: {first_line}"
    if isinstance(exc, RuntimeError) and "is not usable because" in str(exc):
        return FailureKind.BAD_INPUT, first_line  # diffusers: an attention backend's package is missing
    if isinstance(exc, ImportError):
        missing = f" (package {exc.name!r})" if exc.name else ""
        return FailureKind.BAD_INPUT, f"a package is missing{missing}: {first_line}"
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError)):
        return FailureKind.BAD_INPUT, first_line
    if isinstance(exc, OSError):
        # diffusers/transformers report a folder without the expected files as OSError
        return FailureKind.BAD_INPUT, first_line
    return FailureKind.INTERNAL, f"{type(exc).__name__}: {first_line}"
