"""The read-only operator page (``[web] operator_page = true``, admins only): workers and their
state, the queue, active sessions with their storyboard frames, finished videos to play, and the
day's GPU-seconds per user. Server-rendered HTML, everything escaped; media by store ids only.

The workers and the queue are the admin commands' :class:`~bot.ops_view.OpsSnapshot` (what
``/queue`` and ``/gpu`` show, with the same wording for a job's state), asked of the conversation
(``Conversation.ops_snapshot``); the rest comes from the store (``bot.web.ops_data``)."""

from __future__ import annotations

import datetime as dtm
import html
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from bot.conversation.progress import duration
from bot.core_admin import job_status, job_what
from bot.dispatcher import Dispatcher
from bot.ops_view import JobState, OpsSnapshot
from bot.ports import Conversation
from bot.store import NotFound, Store
from bot.web.auth import user_of
from bot.web.chat import serve_file
from bot.web.ops_data import StoreView, gather
from shared.config import Config

_SESSION = r"{session:[A-Za-z0-9_-]{1,64}}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(caption: str, head: tuple[str, ...], rows: Sequence[tuple[str, ...]], empty: str) -> str:
    if not rows:
        return f"<section><h2>{_e(caption)}</h2><p>{_e(empty)}</p></section>"
    header = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
    return f"<section><h2>{_e(caption)}</h2>{table}</section>"


def render(ops: OpsSnapshot, snapshot: StoreView) -> str:
    workers = [
        (
            _e(w.where if w.where == w.slot else f"{w.where} ({w.slot})"),
            _e(w.kind),
            _e(w.state.value),
            _e(w.backend or ""),
            _e(f"job {w.job_id} of {w.job_owner}" if w.job_id is not None else ""),
            _e(w.memory or "not reported"),
            _e(w.problem or ""),
        )
        for w in ops.workers
    ]
    jobs = [
        (
            _e(e.job_id),
            _e(e.owner),
            _e(e.session_id or ""),
            _e(job_what(e)),
            "running" if e.state is JobState.RUNNING else _e(e.position),
            _e(job_status(e)),
        )
        for e in ops.queue
    ]
    paused = "Queue (⏸ paused)" if ops.paused else "Queue"
    if ops.mean_job_seconds is not None:
        mean = f"<p>Recent jobs took {_e(duration(ops.mean_job_seconds))} on average.</p>"
    else:  # as /queue says it
        mean = "<p>(estimates once a job has been timed)</p>" if ops.queue else ""
    sessions = []
    for s in snapshot.sessions:
        frames = "".join(
            f'<figure><img src="{_e(url)}" alt="{_e(label)}" loading="lazy">'
            f"<figcaption>{_e(label)}</figcaption></figure>"
            for label, url in s.frames
        )
        sessions.append(
            f'<article class="session" id="session-{_e(s.id)}"><h3>{_e(s.id)} · {_e(s.platform)} {_e(s.owner)} · '
            f'<span class="state">{_e(s.state)}</span></h3><div class="frames">{frames}</div></article>'
        )
    finals = "".join(
        f'<article class="final"><h3>{_e(f.session_id)} · {_e(f.platform)} {_e(f.owner)}</h3>'
        f'<video controls preload="metadata" src="{_e(f.url)}"></video><p>{_e(f.caption)}</p></article>'
        for f in snapshot.finals
    )
    usage = [(_e(u.platform), _e(u.owner), f"{u.seconds:.0f}") for u in snapshot.usage]
    day = dtm.datetime.fromtimestamp(snapshot.day_started, dtm.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>framechain · operator</title><link rel="stylesheet" href="/static/style.css">'
        '<script src="/static/ops.js" defer></script></head>'
        '<body class="ops"><header><h1>framechain · operator</h1>'
        '<p><a href="/ops">Refresh</a> · <a href="/">Chat</a></p></header><main>'
        + _table("Workers", ("worker", "kind", "state", "backend", "job", "memory", "problem"), workers, "No workers.")
        + mean
        + _table(paused, ("job", "owner", "session", "take", "place", "status"), jobs, "Nothing running or waiting.")
        + "<section><h2>Active sessions</h2>"
        + ("".join(sessions) or "<p>None.</p>")
        + "</section><section><h2>Finished videos</h2>"
        + (finals or "<p>None yet.</p>")
        + "</section>"
        + _table(f"GPU-seconds since {day}", ("platform", "user", "seconds"), usage, "No GPU time used today.")
        + "</main></body></html>"
    )


class OperatorRoutes:
    def __init__(self, config: Config, conversation: Conversation) -> None:
        self.config = config
        self.conversation = conversation
        self.data_dir = config.data_dir.resolve()
        self.store: Store | None = None

    def observe(self, store: Store, dispatcher: Dispatcher | None) -> None:
        """The store, for what the snapshot does not hold; the queue and the workers come from
        the conversation, as for /queue and /gpu."""
        self.store = store

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/ops", self.page)
        app.router.add_get(f"/ops/media/session/{_SESSION}/{{what:start|final}}", self.session_media)
        app.router.add_get(r"/ops/media/segment/{segment:\d{1,18}}/{what:frame|video}", self.segment_media)

    def _store(self, request: web.Request) -> Store:
        if not user_of(request).admin:
            raise web.HTTPForbidden(text="The operator page is for admins.")
        if self.store is None:
            raise web.HTTPServiceUnavailable(text="Starting up; try again in a moment.")
        return self.store

    async def page(self, request: web.Request) -> web.Response:
        store = self._store(request)
        view = await gather(store, reset_hour=self.config.limits.quota_reset_hour_utc)
        text = render(await self.conversation.ops_snapshot(), view)
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def session_media(self, request: web.Request) -> web.StreamResponse:
        store = self._store(request)
        try:
            row = await store.get_session(request.match_info["session"])
        except NotFound:
            raise web.HTTPNotFound() from None
        path = row.first_image if request.match_info["what"] == "start" else row.final_video
        return self._file(path)

    async def segment_media(self, request: web.Request) -> web.StreamResponse:
        store = self._store(request)
        try:
            segment = await store.get_segment(int(request.match_info["segment"]))
        except NotFound:
            raise web.HTTPNotFound() from None
        return self._file(segment.last_frame if request.match_info["what"] == "frame" else segment.video)

    def _file(self, path: Path | None) -> web.StreamResponse:
        if path is None:
            raise web.HTTPNotFound()
        return serve_file(path, self.data_dir)
