"""A ComfyUI server behind TLS (https and wss), and the configurable timeouts: a server that accepts
connections but never answers, and a job that runs longer than comfyui.job_timeout."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from bot.worker_client import WorkerProcess, worker_command
from shared.protocol import Done, Generate
from tests.bot.service_harness import picture_bytes, write_config
from tests.comfyui.helpers import generate, open_backend, options, start_picture
from tests.comfyui_standin import ComfyStandIn
from worker.comfyui.errors import ServerUnavailable
from worker.errors import GenerationError

pytestmark = pytest.mark.timeout(60)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_server_behind_tls_renders_over_https_and_wss(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ComfyStandIn(step_delay=0.01)
    url = await server.start(ssl_context=context)
    assert url.startswith("https://")
    extra = f'[comfyui]\nurls = ["{url}"]\npoll_interval = 0.1\nconnect_timeout = 5.0\n'
    config = write_config(tmp_path, backend="comfyui", frames=33, steps=4, size=64, extra=extra)
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())
    # The worker trusts the certificate as any Python program does: SSL_CERT_FILE (or the system store).
    env = dict(os.environ, SSL_CERT_FILE=str(cert))
    worker = WorkerProcess(worker_command(device="comfyui:0", config_path=config), name="tls", env=env)
    steps: list[int] = []
    try:
        await worker.start(timeout=60)
        job = Generate(job_id="t1", image=str(image), prompt="over tls", out_dir=str(tmp_path), width=64, height=64,
                       frames=33, steps=4, seed=1)  # fmt: skip
        result = await asyncio.wait_for(worker.run(job, lambda p: steps.append(p.step)), 30)
    finally:
        await worker.stop()
        await server.stop()
    assert isinstance(result, Done) and result.frames == 33
    # The steps came over the websocket (wss), not from polling: every one of them.
    assert [s for s in steps if s > 0] == [1, 2, 3, 4]
    [body] = server.received
    assert body["client_id"] in server.sent


async def test_a_server_that_never_answers_is_unavailable_after_request_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # holds the connection open, says nothing

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(ServerUnavailable, match="not reachable"):
            await open_backend(options(f"http://127.0.0.1:{port}", request_timeout=0.5))
    finally:
        for writer in accepted:
            writer.close()
        listener.close()
    assert time.monotonic() - started < 5


async def test_a_job_longer_than_job_timeout_is_stopped_on_the_server() -> None:
    server = ComfyStandIn(step_delay=0.1)
    await server.start()
    backend = await open_backend(options(server.url, job_timeout=0.5))
    try:
        with pytest.raises(GenerationError, match=r"comfyui\.job_timeout"):
            await generate(backend, start_picture(), steps=20)
    finally:
        backend.close()
        await server.stop()
    [prompt_id] = server.history
    assert server.interrupts == [prompt_id]
