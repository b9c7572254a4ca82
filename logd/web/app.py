"""The `logd web` ASGI app: its routes, each a page and its JSON twin.

Every page has a JSON twin under ``/api`` built from the same data (listings keep the
shapes of `logd-ctl --json`). Queries run in worker threads on read-only connections
(`views`), files are paged by `logview`, live records and status come from the control
socket (`live`). Parameters are checked in `params`, who may look in `guard`. Runs on
trio (hypercorn's trio worker); only GET and HEAD are served.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from logd.control import requests as control
from logd.control.requests import ControlError
from logd.web import WebSettings, call_pages, pages, query_pages, session_pages, views
from logd.web.data import BadRequest, NotFound, WebError
from logd.web.guard import Guard
from logd.web.live import MAX_MARK_CHARS, ControlUnavailable, TailEvents, ask
from logd.web.params import bool_param, int_param, is_api, log_args, log_params, param, segments
from logd.web.replies import JSON, on_http_error, on_sqlite_error, on_web_error

__all__ = ["WebSettings", "create_app"]

_T = TypeVar("_T")
STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_LIST_LIMIT = 1000
# The events page opens on the newest events; the API keeps `logd-ctl events`' limit.
EVENTS_PAGE_LIMIT = 200
EVENTS_API_LIMIT = 1000
EVENTS_CHARTED = 20_000
_DATE_RE = re.compile(r"\d{4}-\d\d-\d\d")
_EVENT_FILTERS = ("app", "type", "since", "until", "session", "run", "call", "level")


async def _in_thread(fn: Callable[[], _T]) -> _T:
    return await trio.to_thread.run_sync(fn)


def create_app(settings: WebSettings) -> ASGIApp:
    """The ASGI app for one root and one daemon (see `WebSettings`)."""
    root = settings.root

    def reply(request: Request, data: Any, render: Callable[[Any], str]) -> Response:
        return JSON(data) if is_api(request) else HTMLResponse(render(data))

    def log(request: Request) -> dict[str, Any]:
        return log_args(request, settings.utc)

    async def home(request: Request) -> Response:
        data = await _in_thread(partial(views.apps, root))
        return reply(request, data, pages.apps_page)

    async def run_info(request: Request) -> Response:
        app = param(request, "app")
        return JSON(await _in_thread(partial(views.run_info, root, app)))

    async def runs(request: Request) -> Response:
        query: dict[str, Any] = {
            "app": param(request, "app"),
            "active": bool_param(request, "active"),
            "limit": int_param(request, "limit", DEFAULT_LIST_LIMIT),
        }
        data = await _in_thread(partial(views.runs, root, **query))
        if is_api(request):
            return JSON(data)
        volume = None
        if query["app"] is not None:
            volume = await _in_thread(partial(views.app_volume, root, data, settings.utc))
        return HTMLResponse(pages.runs_page(data, query=query, now=time.time(), volume=volume))

    async def run(request: Request) -> Response:
        api = is_api(request)
        parts = segments(request, "/api/runs/" if api else "/runs/")
        if len(parts) == 3 and parts[2] == "log" and api:
            data = await _in_thread(partial(views.run_log, root, *parts[:2], **log(request)))
            return JSON(data)
        if len(parts) != 2:
            raise NotFound("no such page: use /runs/APP/RUN_ID")
        if api:
            return JSON(await _in_thread(partial(views.run, root, *parts)))
        data = await _in_thread(partial(views.run_page, root, *parts, **log(request)))
        return HTMLResponse(pages.run_page(data, log_params(request), time.time()))

    async def sessions(request: Request) -> Response:
        query: dict[str, Any] = {
            "app": param(request, "app"),
            "active": bool_param(request, "active"),
            "limit": int_param(request, "limit", DEFAULT_LIST_LIMIT),
        }
        listing = partial(views.sessions, root, **query, with_errors=not is_api(request))
        data = await _in_thread(listing)
        return reply(request, data, partial(session_pages.sessions_page, query=query))

    async def session(request: Request) -> Response:
        api = is_api(request)
        parts = segments(request, "/api/sessions/" if api else "/sessions/")
        if len(parts) == 3 and parts[2] == "timeline":
            before = int_param(request, "before", None, 1 << 62)
            data = await _in_thread(partial(views.timeline, root, *parts[:2], before=before))
            return reply(request, data, session_pages.timeline_page)
        if len(parts) == 3 and parts[2] == "log" and api:
            data = await _in_thread(partial(views.session_log, root, *parts[:2], **log(request)))
            return JSON(data)
        if len(parts) != 2:
            raise NotFound("no such page: use /sessions/APP/SESSION_ID[/timeline]")
        if api:
            return JSON(await _in_thread(partial(views.session, root, *parts)))
        data = await _in_thread(partial(views.session_page, root, *parts, **log(request)))
        return HTMLResponse(session_pages.session_page(data, log_params(request)))

    async def calls(request: Request) -> Response:
        day = param(request, "date", 10)
        if day is not None and not _DATE_RE.fullmatch(day):
            raise BadRequest(f"date must be YYYY-MM-DD, not {day!r}")
        query: dict[str, Any] = {
            "app": param(request, "app"),
            "date": day,
            "bot": param(request, "bot"),
            "call": param(request, "call"),
            "active": bool_param(request, "active"),
            "limit": int_param(request, "limit", DEFAULT_LIST_LIMIT),
        }
        data = await _in_thread(partial(views.calls, root, **query))
        return reply(request, data, partial(call_pages.calls_page, query=query))

    async def call(request: Request) -> Response:
        api = is_api(request)
        parts = segments(request, "/api/calls/" if api else "/calls/")
        if len(parts) == 4 and parts[3] == "log" and api:
            data = await _in_thread(partial(views.call_log, root, *parts[:3], **log(request)))
            return JSON(data)
        if len(parts) != 3:
            raise NotFound("no such page: use /calls/APP/YYYY-MM-DD/CALL_ID")
        if api:
            return JSON(await _in_thread(partial(views.call, root, *parts)))
        data = await _in_thread(partial(views.call_page, root, *parts, **log(request)))
        return HTMLResponse(call_pages.call_page(data, log_params(request)))

    async def events(request: Request) -> Response:
        query = {key: param(request, key) for key in _EVENT_FILTERS}
        api = is_api(request)
        limit = int_param(request, "limit", EVENTS_API_LIMIT if api else EVENTS_PAGE_LIMIT)
        now = time.time()
        bounds = {}
        try:
            for key in ("since", "until"):
                value = query[key]
                bounds[key] = control.parse_time(value, now) if value is not None else None
        except ControlError as exc:
            raise BadRequest(exc.message) from None
        data = await _in_thread(partial(views.events, root, query, bounds, limit))
        if api:
            return JSON(data)
        charted = data
        if limit is not None and len(data) >= limit and limit < EVENTS_CHARTED:
            # The table shows the newest few; the chart and p50/p95 take many more.
            charted = await _in_thread(partial(views.events, root, query, bounds, EVENTS_CHARTED))
        page = query_pages.events_page(data, query=query, limit=limit, charted=charted)
        return HTMLResponse(page)

    async def status(request: Request) -> Response:
        if is_api(request):
            return JSON(await ask(str(settings.control), "status"))
        timeline = await _in_thread(partial(views.daemon_timeline, root))
        try:
            data = await ask(str(settings.control), "status")
        except ControlUnavailable as exc:
            # The timeline says when and how it stopped: worth showing without it.
            page = query_pages.status_page(None, timeline=timeline, problem=exc.message)
            return HTMLResponse(page)
        return HTMLResponse(query_pages.status_page(data, timeline=timeline))

    async def tail(request: Request) -> Response:
        args: dict[str, Any] = {
            key: param(request, key) for key in ("app", "run", "session", "call", "events")
        }
        args["n"] = int_param(request, "n", 100, 1000)
        wanted = {k: v for k, v in args.items() if v is not None}
        last_id = request.headers.get("last-event-id")
        return TailEvents(settings.control, wanted, last_id[:MAX_MARK_CHARS] if last_id else None)

    async def live(request: Request) -> Response:
        query = {key: param(request, key) for key in ("app", "run", "session", "call", "events")}
        return HTMLResponse(query_pages.live_page(query))

    routes = [
        Route("/", home),
        Route("/runs", runs),
        Route("/runs/{rest:path}", run),
        Route("/sessions", sessions),
        Route("/sessions/{rest:path}", session),
        Route("/calls", calls),
        Route("/calls/{rest:path}", call),
        Route("/events", events),
        Route("/status", status),
        Route("/live", live),
        Route("/api/apps", home),
        Route("/api/run-info", run_info),
        Route("/api/runs", runs),
        Route("/api/runs/{rest:path}", run),
        Route("/api/sessions", sessions),
        Route("/api/sessions/{rest:path}", session),
        Route("/api/calls", calls),
        Route("/api/calls/{rest:path}", call),
        Route("/api/events", events),
        Route("/api/status", status),
        Route("/api/tail", tail),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            WebError: on_web_error,
            HTTPException: on_http_error,
            sqlite3.Error: on_sqlite_error,
        },
    )
    return Guard(app, settings.token)
