"""``python -m worker``: one worker process on one device (see worker.process)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

from shared.config import ConfigError, load_config
from shared.logs import setup_logging
from shared.protocol import Failed, FailureKind
from worker.errors import GenerationError
from worker.process import ProtocolOut, claim_stdout, serve_forever

log = logging.getLogger("framechain.worker")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description="framechain GPU worker")
    parser.add_argument("--config", metavar="PATH")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda:N")
    parser.add_argument("--backend", choices=["wan", "preview", "comfyui"], default=None)
    parser.add_argument("--model", default=None, help="overrides generation.model")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    protocol_out = claim_stdout()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.log_level, process="worker")
    generation = config.generation
    if args.model:
        generation = dataclasses.replace(generation, model=args.model)
    backend_name = args.backend or config.generation.backend
    device = args.device or config.workers.devices[0]

    from worker.factory import build_backend, resolve_device

    try:
        device = resolve_device(device, backend_name)
        log.info("loading %s backend on %s", backend_name, device)
        if device.startswith("comfyui:"):
            backend_name = "comfyui"  # a server's slot, also beside local devices
        backend, info = build_backend(generation, backend_name, device, comfyui=config.comfyui)
    except (GenerationError, OSError, ValueError) as exc:
        # Tell the parent why there will be no `ready`, then exit: it decides whether to retry.
        log.exception("could not load the %s backend", backend_name)
        kind = exc.kind if isinstance(exc, GenerationError) else FailureKind.INTERNAL
        ProtocolOut(protocol_out).send(Failed(job_id=None, kind=kind, message=f"could not load backend: {exc}"))
        return 1
    serve_forever(backend, device=device, stdin=sys.stdin, stdout=protocol_out, info=info)
    log.info("worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
