"""``python -m worker``: one worker process on one device (see worker.process).

Every way a start can fail ends in one ``failed`` message (``job_id`` null) with one sentence,
then exit status 1, instead of a traceback: a bad configuration or a missing, unreadable or
corrupt model file is ``bad_input`` (found before torch is imported), running out of memory is
``oom``, anything else ``internal``. The dispatcher decides from the kind whether to try again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence

from shared.config import ConfigError, load_config
from shared.logs import setup_logging
from shared.protocol import Failed, FailureKind
from worker.errors import load_failure
from worker.model_check import ModelFileError, preflight
from worker.process import ParentGone, ProtocolOut, claim_stdout, serve_forever

log = logging.getLogger("framechain.worker")


def _refuse(out: ProtocolOut, kind: FailureKind, message: str) -> int:
    """Tell the parent why there will be no ``ready``; it decides whether to retry."""
    with contextlib.suppress(ParentGone):
        out.send(Failed(job_id=None, kind=kind, message=message))
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description="framechain GPU worker")
    parser.add_argument("--config", metavar="PATH")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda:N")
    parser.add_argument("--backend", choices=["wan", "preview", "comfyui"], default=None)
    parser.add_argument("--model", default=None, help="overrides generation.model")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not sys.stdin.isatty():
        # Spawned by `framechain run`, which stops it (Shutdown, then a kill): a Ctrl-C in its
        # terminal reaches the whole process group, and is the parent's to act on, not ours.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = ProtocolOut(claim_stdout())
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        _refuse(out, FailureKind.BAD_INPUT, str(exc))
        return 2
    setup_logging(args.log_level or config.log_level, process="worker")
    generation = config.generation
    if args.model:
        generation = dataclasses.replace(generation, model=args.model)
    backend_name = args.backend or config.generation.backend
    device = args.device or config.workers.devices[0]
    if device.startswith("comfyui:"):
        backend_name = "comfyui"  # a server's slot, also beside local devices

    # 1. Cheap checks first: a missing file is found in milliseconds, not after the heavy imports.
    if backend_name == "wan":
        try:
            preflight(generation)
        except ModelFileError as exc:
            log.error("cannot start the wan backend: %s", exc)
            return _refuse(out, FailureKind.BAD_INPUT, f"could not load backend {backend_name}: {exc}")

    # 2. Load (torch, diffusers and the weights).
    from worker.factory import build_backend, resolve_device

    try:
        device = resolve_device(device, backend_name)
        log.info("loading %s backend on %s", backend_name, device)
        backend, info = build_backend(generation, backend_name, device, comfyui=config.comfyui)
    except Exception as exc:
        kind, message = load_failure(exc)
        if kind is FailureKind.INTERNAL:
            log.exception("could not load the %s backend", backend_name)
        else:
            log.error("could not load the %s backend: %s", backend_name, message)
        return _refuse(out, kind, f"could not load backend {backend_name}: {message}")

    # Smooth playback: RIFE on this worker's device (a ComfyUI slot's takes are doubled on the CPU here).
    interpolator = None
    if generation.smooth_playback:
        from worker.interpolate import InterpolationError, TakeInterpolator

        try:
            interpolator = TakeInterpolator(generation.rife_weights, device if device.startswith("cuda") else "cpu")
        except InterpolationError as exc:
            return _refuse(out, FailureKind.BAD_INPUT, str(exc))

    # 3. Serve.
    served = serve_forever(
        backend, device=device, stdin=sys.stdin, stdout=out, info=info, limits=config.limits, interpolator=interpolator
    )
    if served:
        log.info("worker stopped")
    else:
        log.warning("the parent process is gone; worker exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
