"""An asyncio client for one ComfyUI server: its HTTP API and one persistent websocket.

HTTP: ``POST /upload/image``, ``POST /prompt``, ``GET/POST /queue``, ``POST /interrupt``,
``GET /history/{prompt_id}``, ``GET /view``, ``GET /object_info``, ``GET /system_stats``.
Websocket: ``/ws?clientId=...``, JSON messages ``{"type", "data"}`` (binary preview frames are
skipped), kept connected and reconnected in the background.

Errors are translated at this edge (see worker.comfyui.errors): a server that cannot be reached
is ``ServerUnavailable``, a prompt refused with ``node_errors`` is ``PromptRefused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from worker.comfyui.errors import PromptRefused, ServerUnavailable
from worker.errors import GenerationError

log = logging.getLogger("framechain.worker.comfyui")

#: Seconds between websocket reconnection attempts, doubled up to the maximum.
RECONNECT_DELAY = 0.5
MAX_RECONNECT_DELAY = 10.0


def display_url(url: str) -> str:
    """The URL without any user:password part, for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_headers(lines: Sequence[str]) -> dict[str, str]:
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers


def describe_node_errors(body: Mapping[str, Any]) -> str:
    """One line from a ``/prompt`` refusal: the error, then each node's errors."""
    error = body.get("error")
    parts = [str(error.get("message", error)) if isinstance(error, Mapping) else str(error or "prompt refused")]
    node_errors = body.get("node_errors") or {}
    if isinstance(node_errors, Mapping):
        for node_id, entry in node_errors.items():
            if not isinstance(entry, Mapping):
                continue
            details = "; ".join(
                f"{e.get('message', '')}: {e.get('details', '')}".strip(": ")
                for e in entry.get("errors", [])
                if isinstance(e, Mapping)
            )
            parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {details}")
    return " — ".join(parts)


class ComfyClient:
    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = display_url(self.url)
        self.client_id = client_id
        self.headers = dict(headers or {})
        self.timeout = aiohttp.ClientTimeout(total=request_timeout, connect=connect_timeout)
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws_task: asyncio.Task[None] | None = None
        #: Every JSON websocket message, in order; the one job at a time filters its own.
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ws_connected = asyncio.Event()
        #: Counts websocket connections; a change during a job means messages may be missing.
        self.ws_generation = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._ws_task is not None:
            self._ws_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ws_task
        if self._session is not None:
            await self._session.close()

    # --- HTTP ----------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ServerUnavailable(f"{self.name} is not reachable ({type(exc).__name__}: {exc})") from exc
        text = body[:200].decode("utf-8", "replace")
        if status >= 500 or status in (401, 403, 407):
            hint = " (check comfyui.headers)" if status in (401, 403, 407) else ""
            raise ServerUnavailable(f"{self.name}{path}: HTTP {status}{hint} {text}".strip())
        if status >= 400 and path != "/prompt":
            raise GenerationError(f"{self.name}{path}: HTTP {status} {text}".strip())
        return status, body

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = await self._request(method, path, **kwargs)
        try:
            return json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServerUnavailable(f"{self.name}{path}: HTTP {status}, not JSON") from None

    async def system_stats(self) -> dict[str, Any]:
        data = await self._json("GET", "/system_stats")
        return data if isinstance(data, dict) else {}

    async def object_info(self) -> dict[str, Any]:
        data = await self._json("GET", "/object_info")
        if not isinstance(data, dict):
            raise ServerUnavailable(f"{self.name}/object_info did not return the node definitions")
        return data

    async def upload_image(self, data: bytes, name: str) -> str:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="image/png")
        form.add_field("overwrite", "true")
        form.add_field("type", "input")
        body = await self._json("POST", "/upload/image", data=form)
        if not isinstance(body, dict) or "name" not in body:
            raise ServerUnavailable(f"{self.name}/upload/image: unexpected answer {body!r}")
        subfolder = body.get("subfolder") or ""
        return f"{subfolder}/{body['name']}" if subfolder else str(body["name"])

    async def submit(self, graph: Mapping[str, Any]) -> str:
        status, body = await self._request("POST", "/prompt", json={"prompt": graph, "client_id": self.client_id})
        try:
            answer = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = {"error": body[:200].decode("utf-8", "replace")}
        if status != 200 or answer.get("node_errors"):
            raise PromptRefused(f"{self.name} refused the prompt: {describe_node_errors(answer)}")
        return str(answer["prompt_id"])

    async def queue(self) -> tuple[list[str], list[str]]:
        """Prompt ids running and waiting, in the server's order."""
        data = await self._json("GET", "/queue")

        def ids(key: str) -> list[str]:
            items = data.get(key, []) if isinstance(data, dict) else []
            # Each item is [number, prompt_id, prompt, extra_data, outputs_to_execute].
            return [str(item[1]) for item in sorted(items, key=lambda item: item[0]) if len(item) > 1]

        return ids("queue_running"), ids("queue_pending")

    async def delete_pending(self, prompt_id: str) -> None:
        await self._request("POST", "/queue", json={"delete": [prompt_id]})

    async def interrupt(self, prompt_id: str) -> None:
        # Servers since 2025 interrupt only the given prompt; older ones the running one, which
        # the caller has checked is ours.
        await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        data = await self._json("GET", f"/history/{prompt_id}")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    async def view(self, filename: str, subfolder: str, kind: str) -> bytes:
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        status, body = await self._request("GET", "/view", params=params)
        if status != 200:
            raise ServerUnavailable(f"{self.name}/view {filename}: HTTP {status}")
        return body

    # --- websocket -----------------------------------------------------------------------------

    def start_websocket(self) -> None:
        if self._ws_task is None:
            self._ws_task = asyncio.create_task(self._ws_loop(), name=f"ws-{self.name}")

    def _ws_url(self) -> str:
        scheme = "wss" if self.url.startswith("https://") else "ws"
        return f"{scheme}://{self.url.split('://', 1)[1]}/ws?clientId={self.client_id}"

    async def _ws_loop(self) -> None:
        delay = RECONNECT_DELAY
        while True:
            try:
                async with self.session.ws_connect(
                    self._ws_url(), heartbeat=30.0, timeout=aiohttp.ClientWSTimeout(ws_close=5.0)
                ) as ws:
                    self.ws_generation += 1
                    self.ws_connected.set()
                    delay = RECONNECT_DELAY
                    log.info("websocket to %s connected", self.name)
                    async for message in ws:
                        if message.type is aiohttp.WSMsgType.TEXT:
                            with contextlib.suppress(json.JSONDecodeError, TypeError):
                                event = json.loads(message.data)
                                if isinstance(event, dict):
                                    self.events.put_nowait(event)
                        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                            break
                        # Binary messages are preview images: not needed.
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.debug("websocket to %s: %s", self.name, exc)
            if self.ws_connected.is_set():
                log.warning("websocket to %s dropped; following jobs through /history meanwhile", self.name)
            self.ws_connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)
