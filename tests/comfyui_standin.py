"""A ComfyUI stand-in: an aiohttp server on 127.0.0.1 with ComfyUI's HTTP API and websocket.

It is the outside world for the ComfyUI backend's tests, written from what a real server answered
and sent for one run of the reference graph (/work/shared/comfyui-ws-trace.json, kept in
tests/comfyui/ws_trace.json): the same routes, answer shapes and message order —
``status`` on connect and on queue changes, then per prompt ``execution_start``,
``execution_cached``, per node ``progress_state`` / ``executing`` (samplers: ``progress`` per step,
with a binary preview frame), output nodes ``executed``, then ``execution_success`` (or
``execution_error`` / ``execution_interrupted``), the history entry, ``status`` and
``executing`` with ``node: null``.

Executing a prompt produces frames of the requested size and length from the uploaded image:
frame 0 is the start image (as Wan re-renders it), each further frame is it shifted sideways by a
seed-dependent amount, so tests can tell frames, seeds and sizes apart exactly.

Faults: ``drop_ws_at_step`` (close every websocket and refuse new ones), ``die_at_step`` (the
whole server goes away), ``oom_at_step`` (an ``execution_error`` of type torch.OutOfMemoryError),
and any change to ``object_info`` (e.g. a model file removed) makes /prompt refuse with
``node_errors`` as ComfyUI's validation does. ``hold_foreign_job`` queues someone else's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import ssl
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image, ImageOps

HERE = Path(__file__).parent / "comfyui"
SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
IMAGE_OUTPUTS = {"SaveImage": "output", "PreviewImage": "temp"}


def recorded_object_info() -> dict[str, Any]:
    info: dict[str, Any] = json.loads((HERE / "object_info_wan22.json").read_text(encoding="utf-8"))["object_info"]
    return info


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    client_id: str
    outputs: list[str]
    #: Someone else's job: it "runs" until this is set.
    hold: asyncio.Event | None = None

    def row(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, {"client_id": self.client_id}, self.outputs]


@dataclass
class Faults:
    drop_ws_at_step: int | None = None
    die_at_step: int | None = None
    oom_at_step: int | None = None
    refuse_websockets: bool = False


@dataclass
class ComfyStandIn:
    step_delay: float = 0.0
    version: str = "0.3.60"
    object_info: dict[str, Any] = field(default_factory=recorded_object_info)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.uploads: dict[str, bytes] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.pending: list[QueueItem] = []
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, list[web.WebSocketResponse]] = {}
        self.received: list[dict[str, Any]] = []
        #: When each body in ``received`` arrived (time.monotonic), to order jobs across servers.
        self.received_at: list[float] = []
        self.interrupts: list[Any] = []
        self.deletes: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self._number = 0
        self._counter = 0
        self._interrupt = False
        self._wake = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._executor: asyncio.Task[None] | None = None
        self.url = ""
        self.alive = False
        self._ssl: ssl.SSLContext | None = None

    # --- life --------------------------------------------------------------------------------

    async def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve on 127.0.0.1 (HTTPS and WSS with ``ssl_context``); returns the URL."""
        app = web.Application(middlewares=[self._record_headers], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/object_info", self._object_info)
        app.router.add_get("/object_info/{node_class}", self._object_info_one)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._queue_post)
        app.router.add_post("/interrupt", self._interrupt_post)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self._ssl = ssl_context
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self.alive = True
        self._executor = asyncio.create_task(self._execute_forever())
        return self.url

    async def stop(self) -> None:
        """The server goes away: connections are closed, nothing answers any more."""
        self.alive = False
        if self._executor is not None and self._executor is not asyncio.current_task():
            self._executor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._executor
        for sockets in self.sockets.values():
            for ws in list(sockets):
                with contextlib.suppress(Exception):
                    await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        """Back on the same port, with an empty queue and history (as after a real restart)."""
        context = self._ssl
        self.__post_init__()
        await self.start(self.port, context)

    def sent_ids(self) -> set[str]:
        """Prompt ids whose execution has started (some message about them was sent)."""
        return {m["data"].get("prompt_id") for sent in self.sent.values() for m in sent if "data" in m} - {None}

    def remove_model(self, node_class: str, input_name: str, value: str) -> None:
        choices = self.object_info[node_class]["input"]["required"][input_name][0]
        choices.remove(value)

    async def hold_foreign_job(self) -> asyncio.Event:
        """Someone else's job, running (or waiting) until the returned event is set."""
        hold = asyncio.Event()
        self._number += 1
        item = QueueItem(self._number, str(uuid.uuid4()), {}, "someone-else", [], hold=hold)
        self.pending.append(item)
        self._wake.set()
        await self._broadcast_status()
        return hold

    # --- HTTP --------------------------------------------------------------------------------

    @web.middleware
    async def _record_headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.headers_seen.append(dict(request.headers))
        response: web.StreamResponse = await handler(request)
        return response

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "posix", "ram_total": 137438953472, "ram_free": 100000000000,
                    "comfyui_version": self.version, "required_frontend_version": "1.26.0",
                    "python_version": "3.12.3", "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False, "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda", "index": 0,
                        "vram_total": 25386352640, "vram_free": 24000000000,
                        "torch_vram_total": 0, "torch_vram_free": 0,
                    }
                ],
            }
        )  # fmt: skip

    def _info_now(self) -> dict[str, Any]:
        info = copy.deepcopy(self.object_info)
        if "LoadImage" in info:  # LoadImage lists the input folder
            info["LoadImage"]["input"]["required"]["image"][0] = sorted(self.uploads)
        return info

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self._info_now())

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self._info_now()
        return web.json_response({name: info[name]} if name in info else {})

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        name = Path(image.filename).name
        overwrite = form.get("overwrite") == "true"
        subfolder = str(form.get("subfolder", ""))
        base, dot, ext = name.rpartition(".")
        i = 1
        while not overwrite and (f"{subfolder}/{name}" if subfolder else name) in self.uploads:
            name = f"{base} ({i}){dot}{ext}"
            i += 1
        self.uploads[f"{subfolder}/{name}" if subfolder else name] = image.file.read()
        return web.json_response({"name": name, "subfolder": subfolder, "type": str(form.get("type", "input"))})

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body.get("prompt")
        self.received.append(body)
        self.received_at.append(time.monotonic())
        if not isinstance(prompt, dict):
            return web.json_response(
                {"error": _error("no_prompt", "No prompt provided"), "node_errors": {}}, status=400
            )
        error, node_errors, outputs = self._validate(prompt)
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        self._number += 1
        prompt_id = str(uuid.uuid4())
        item = QueueItem(self._number, prompt_id, prompt, str(body.get("client_id", "")), outputs)
        self.pending.append(item)
        self._wake.set()
        await self._broadcast_status()
        return web.json_response({"prompt_id": prompt_id, "number": item.number, "node_errors": {}})

    def _validate(self, prompt: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
        """ComfyUI's validate_prompt, for what the tests need: classes, required inputs, combos, links."""
        info = self._info_now()
        outputs = []
        for node_id, node in prompt.items():
            class_type = node.get("class_type")
            if class_type not in info:
                message = f"Cannot execute because node {class_type} does not exist."
                return _error("invalid_prompt", message, f"Node ID '#{node_id}'"), {}, []
            if info[class_type].get("output_node"):
                outputs.append(node_id)
        if not outputs:
            return _error("prompt_no_outputs", "Prompt has no outputs"), {}, []
        node_errors: dict[str, Any] = {}
        for node_id, node in prompt.items():
            class_type = node["class_type"]
            errors = []
            required = info[class_type]["input"].get("required", {})
            optional = info[class_type]["input"].get("optional", {})
            for name, spec in {**required, **optional}.items():
                value = node["inputs"].get(name)
                if value is None:
                    if name in required:
                        errors.append(
                            _error("required_input_missing", "Required input is missing", name, input_name=name)
                        )
                    continue
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    if value[0] not in prompt:
                        errors.append(_error("bad_linked_input", "Bad linked input", name, input_name=name))
                    continue
                if isinstance(spec[0], list) and value not in spec[0]:
                    if class_type == "LoadImage":
                        details = f"{name} - Invalid image file: {value}"
                        errors.append(_error("custom_validation_failed", "Custom validation failed for node", details))
                    else:
                        details = f"{name}: '{value}' not in {spec[0]}"
                        extra = {"input_config": spec, "received_value": value}
                        errors.append(
                            _error("value_not_in_list", "Value not in list", details, input_name=name, **extra)
                        )
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": outputs, "class_type": class_type}
        if node_errors:
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
            return error, node_errors, []
        return None, {}, outputs

    async def _queue(self, request: web.Request) -> web.Response:
        running = [self.running.row()] if self.running else []
        return web.json_response({"queue_running": running, "queue_pending": [i.row() for i in self.pending]})

    async def _queue_post(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete", []):
            self.deletes.append(prompt_id)
            self.pending = [i for i in self.pending if i.prompt_id != prompt_id]
        await self._broadcast_status()
        return web.Response(status=200)

    async def _interrupt_post(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {}
        with contextlib.suppress(json.JSONDecodeError):
            body = await request.json() if request.can_read_body else {}
        target = body.get("prompt_id")
        self.interrupts.append(target)
        # Since 2025 a prompt_id interrupts only that prompt, if it is the one running.
        if self.running is not None and (target is None or target == self.running.prompt_id):
            self._interrupt = True
        return web.Response(status=200)

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _view(self, request: web.Request) -> web.Response:
        q = request.query
        data = self.files.get((q.get("type", "output"), q.get("subfolder", ""), q.get("filename", "")))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    # --- websocket ---------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.faults.refuse_websockets:
            return web.Response(status=503)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.setdefault(client_id, []).append(ws)
        await self._send(client_id, "status", {"status": self._queue_info(), "sid": client_id})
        try:
            async for message in ws:
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            with contextlib.suppress(ValueError):
                self.sockets[client_id].remove(ws)
        return ws

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.pending) + (1 if self.running else 0)}}

    async def _send(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        targets = [client_id] if client_id is not None else list(self.sockets)
        for target in targets:
            self.sent.setdefault(target, []).append({"type": kind, "data": data})
            for ws in list(self.sockets.get(target, [])):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def _send_preview(self, client_id: str) -> None:
        # Binary message: event type 1 (preview image), image type 2 (PNG), then the image.
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG")
        for ws in list(self.sockets.get(client_id, [])):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(struct.pack(">II", 1, 2) + buffer.getvalue())

    async def _broadcast_status(self) -> None:
        await self._send(None, "status", {"status": self._queue_info()})

    async def drop_websockets(self) -> None:
        self.faults.refuse_websockets = True
        for sockets in self.sockets.values():
            for ws in list(sockets):
                with contextlib.suppress(Exception):
                    await ws.close()

    # --- execution ---------------------------------------------------------------------------

    async def _execute_forever(self) -> None:
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            self.running = self.pending.pop(0)
            item = self.running
            await self._broadcast_status()  # ComfyUI's PromptQueue.get() announces it too
            try:
                if item.hold is not None:
                    await item.hold.wait()
                else:
                    await self._execute(item)
            finally:
                self.running = None
                self._interrupt = False
            if not self.alive:
                return
            await self._broadcast_status()
            if item.hold is None:
                await self._send(item.client_id, "executing", {"node": None, "prompt_id": item.prompt_id})

    def _order(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    visit(value[0])
            order.append(node_id)

        for output in sorted(outputs, key=int, reverse=True):
            visit(output)
        return order

    async def _execute(self, item: QueueItem) -> None:
        pid, client, prompt = item.prompt_id, item.client_id, item.prompt
        messages: list[list[Any]] = []

        async def message(kind: str, data: dict[str, Any], *, keep: bool = False) -> None:
            if keep:
                messages.append([kind, data])
            await self._send(client, kind, data)

        await message("execution_start", {"prompt_id": pid, "timestamp": now_ms()}, keep=True)
        await message("execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": now_ms()}, keep=True)
        states: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        outputs: dict[str, Any] = {}
        total_steps = 0

        async def progress_state(node_id: str, value: float, maximum: float, state: str) -> None:
            states[node_id] = {"value": value, "max": maximum, "state": state, "node_id": node_id,
                               "prompt_id": pid, "display_node_id": node_id, "parent_node_id": None,
                               "real_node_id": node_id}  # fmt: skip
            await self._send(client, "progress_state", {"prompt_id": pid, "nodes": copy.deepcopy(states)})

        for node_id in self._order(prompt, item.outputs):
            node = prompt[node_id]
            class_type = node["class_type"]
            await progress_state(node_id, 0.0, 1.0, "running")
            await self._send(client, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
            if class_type in SAMPLERS:
                inputs = node["inputs"]
                steps = int(inputs.get("steps", 1))
                first = int(inputs.get("start_at_step", 0))
                last = min(int(inputs.get("end_at_step", steps)), steps)
                count = max(0, last - first)
                for value in range(1, count + 1):
                    await asyncio.sleep(self.step_delay)
                    total_steps += 1
                    if self._interrupt:
                        data = {"prompt_id": pid, "node_id": node_id, "node_type": class_type,
                                "executed": executed, "timestamp": now_ms()}  # fmt: skip
                        await message("execution_interrupted", data, keep=True)
                        self._finish(item, outputs, messages, "error")
                        return
                    if total_steps == self.faults.oom_at_step:
                        await self._oom(item, node_id, class_type, executed, outputs, messages)
                        return
                    if total_steps == self.faults.die_at_step:
                        await self.stop()
                        return
                    if total_steps == self.faults.drop_ws_at_step:
                        await self.drop_websockets()
                    await progress_state(node_id, float(value), float(count), "running")
                    await self._send(
                        client, "progress", {"value": value, "max": count, "prompt_id": pid, "node": node_id}
                    )
                    await self._send_preview(client)
            if class_type in IMAGE_OUTPUTS:
                outputs[node_id] = {"images": self._save_frames(prompt, node)}
                data = {"node": node_id, "display_node": node_id, "output": outputs[node_id], "prompt_id": pid}
                await self._send(client, "executed", data)
            elif class_type == "SaveLatent":
                self._counter += 1
                outputs[node_id] = {"latents": [{"filename": f"latent_{self._counter:05}_.latent",
                                                 "subfolder": "latents", "type": "output"}]}  # fmt: skip
                data = {"node": node_id, "display_node": node_id, "output": outputs[node_id], "prompt_id": pid}
                await self._send(client, "executed", data)
            executed.append(node_id)
            await progress_state(node_id, 1.0, 1.0, "finished")
        await message("execution_success", {"prompt_id": pid, "timestamp": now_ms()}, keep=True)
        self._finish(item, outputs, messages, "success")

    async def _oom(
        self, item: QueueItem, node_id: str, class_type: str, executed: list[str],
        outputs: dict[str, Any], messages: list[list[Any]],
    ) -> None:  # fmt: skip
        data = {
            "prompt_id": item.prompt_id, "node_id": node_id, "node_type": class_type, "executed": executed,
            "exception_message": "Allocation on device \nThis error means you ran out of memory on your GPU.\n\n"
            "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.",
            "exception_type": "torch.OutOfMemoryError",
            "traceback": ['  File "/ComfyUI/execution.py", line 496, in execute\n'],
            "current_inputs": {}, "current_outputs": [], "timestamp": now_ms(),
        }  # fmt: skip
        messages.append(["execution_error", data])
        await self._send(item.client_id, "execution_error", data)
        self._finish(item, outputs, messages, "error")

    def _finish(self, item: QueueItem, outputs: dict[str, Any], messages: list[list[Any]], status: str) -> None:
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs}
        self.history[item.prompt_id] = {
            "prompt": [*item.row()[:3], {"client_id": item.client_id, "create_time": now_ms()}, item.outputs],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": meta,
        }

    def _save_frames(self, prompt: dict[str, Any], node: dict[str, Any]) -> list[dict[str, str]]:
        start, width, height, length, seed = self._job_values(prompt)
        start = ImageOps.fit(start, (width, height), method=Image.Resampling.BILINEAR)
        base = np.asarray(start.convert("RGB"))
        shift = 1 + seed % 3
        kind = IMAGE_OUTPUTS[node["class_type"]]
        prefix = str(node["inputs"].get("filename_prefix", "ComfyUI_temp_abcde" if kind == "temp" else "ComfyUI"))
        subfolder, _, stem = prefix.rpartition("/")
        saved = []
        for index in range(length):
            frame = np.roll(base, index * shift, axis=1)
            self._counter += 1
            filename = f"{stem}_{self._counter:05}_.png"
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
            self.files[(kind, subfolder, filename)] = buffer.getvalue()
            saved.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return saved

    def _job_values(self, prompt: dict[str, Any]) -> tuple[Image.Image, int, int, int, int]:
        start: Image.Image | None = None
        width = height = 64
        length = 1
        seed = 0
        for node in prompt.values():
            inputs = node["inputs"]
            if node["class_type"] == "LoadImage":
                start = Image.open(io.BytesIO(self.uploads[inputs["image"]]))
            elif node["class_type"] == "WanImageToVideo":
                width, height, length = int(inputs["width"]), int(inputs["height"]), int(inputs["length"])
            elif node["class_type"] in SAMPLERS and inputs.get("add_noise", "enable") == "enable":
                seed = int(inputs.get("noise_seed", inputs.get("seed", 0)))
        assert start is not None, "the prompt loads no image"
        return start, width, height, length, seed


def expected_frames(start: Image.Image, width: int, height: int, length: int, seed: int) -> np.ndarray:
    """The frames the stand-in renders for a job (for exact comparisons in tests)."""
    base = np.asarray(ImageOps.fit(start, (width, height), method=Image.Resampling.BILINEAR).convert("RGB"))
    return np.stack([np.roll(base, i * (1 + seed % 3), axis=1) for i in range(length)])
