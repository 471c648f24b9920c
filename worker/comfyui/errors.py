"""Errors of the ComfyUI backend, each a GenerationError so the worker maps it to a failure kind.

GenerationError (worker.errors)
├── ServerUnavailable    kind = internal   the server cannot be reached (down, refused, timed out)
│   └── ServerLost       the server went away during a job: the worker exits, so the dispatcher
│                        retries the job on another slot, or on this one once it is back
├── PromptRefused        kind = internal   /prompt answered with node_errors
└── OutOfMemory          kind = oom        (worker.errors) ComfyUI ran out of GPU memory
"""

from __future__ import annotations

from worker.errors import BackendLost, GenerationError


class ServerUnavailable(GenerationError):
    pass


class ServerLost(ServerUnavailable, BackendLost):
    pass


class PromptRefused(GenerationError):
    pass
