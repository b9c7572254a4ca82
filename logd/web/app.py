"""The `logd web` ASGI app: routes, parameters, the access guard and error replies.

Every page has a JSON twin under ``/api`` built from the same data (listings keep the
shapes of `logd-ctl --json`). Queries run in worker threads on read-only connections
(`data`), files are paged by `logview`, live records and status come from the control
socket (`live`). Runs on trio (hypercorn's trio worker); only GET and HEAD are served.
"""

from __future__ import annotations

import hmac
import json
import re
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, unquote_to_bytes

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logd.control import requests as control
from logd.control.requests import MAX_LIMIT, ControlError
from logd.web import WebSettings, pages, query_pages, views
from logd.web.data import MAX_ID_CHARS, BadRequest, NotFound, WebError
from logd.web.live import TailEvents, ask
from logd.web.logview import LEVELS

__all__ = ["WebSettings", "create_app"]

_T = TypeVar("_T")
STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_LIST_LIMIT = 1000
TOKEN_COOKIE = "logd_token"
_DATE_RE = re.compile(r"\d{4}-\d\d-\d\d")
_LOOPBACK_HOST_RE = re.compile(r"(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?", re.IGNORECASE)
_SECURITY_HEADERS = [
    # Scripts and styles come from /static only; the token must not leak in a Referer.
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


# --- parameters ----------------------------------------------------------------------


def _param(request: Request, name: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_chars:
        raise BadRequest(f"{name} is longer than {max_chars} characters")
    return value


def _int_param(
    request: Request, name: str, default: int | None, high: int = MAX_LIMIT
) -> int | None:
    text = _param(request, name, 20)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or int(text) > high:
        raise BadRequest(f"{name} must be a number from 0 to {high}")
    return int(text)


def _bool_param(request: Request, name: str) -> bool | None:
    text = _param(request, name, 8)
    if text is None:
        return None
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"{name} must be true or false")


def _segments(request: Request, prefix: str) -> list[str]:
    """The path segments after ``prefix``, each percent-decoded on its own.

    Taken from the raw path, so an id holding ``/`` (sent as ``%2F``) stays one segment.
    """
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    text = raw.decode("latin-1")
    if not text.startswith(prefix):
        raise NotFound("no such page")
    parts = text[len(prefix) :].split("/")
    try:
        return [unquote_to_bytes(p).decode("utf-8") for p in parts]
    except UnicodeDecodeError:
        raise BadRequest("the path is not UTF-8") from None


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


# --- replies -------------------------------------------------------------------------


class _JSON(JSONResponse):
    """JSON as `logd-ctl --json` prints it (non-ASCII kept, odd values as strings)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=str).encode("utf-8")


def _error_reply(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return _JSON({"error": message}, status_code=status)
    return HTMLResponse(pages.error_page(status, message), status_code=status)


async def _on_web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    return _error_reply(request, exc.status, exc.message)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "no such page" if exc.status_code == 404 else str(exc.detail)
    return _error_reply(request, exc.status_code, message)


async def _on_sqlite_error(request: Request, exc: Exception) -> Response:
    return _error_reply(request, 503, f"the index could not be read right now: {exc}")


async def _in_thread(fn: Callable[[], _T]) -> _T:
    return await trio.to_thread.run_sync(fn)


# --- routes --------------------------------------------------------------------------


def create_app(settings: WebSettings) -> ASGIApp:
    """The ASGI app for one root and one daemon (see `WebSettings`)."""
    root = settings.root

    def reply(request: Request, data: Any, render: Callable[[Any], str]) -> Response:
        return _JSON(data) if _is_api(request) else HTMLResponse(render(data))

    async def home(request: Request) -> Response:
        data = await _in_thread(partial(views.apps, root))
        return reply(request, data, pages.apps_page)

    async def run_info(request: Request) -> Response:
        app = _param(request, "app")
        return _JSON(await _in_thread(partial(views.run_info, root, app)))

    async def runs(request: Request) -> Response:
        query: dict[str, Any] = {
            "app": _param(request, "app"),
            "active": _bool_param(request, "active"),
            "limit": _int_param(request, "limit", DEFAULT_LIST_LIMIT),
        }
        data = await _in_thread(partial(views.runs, root, **query))
        return reply(request, data, partial(pages.runs_page, query=query, now=time.time()))

    async def run(request: Request) -> Response:
        parts = _segments(request, "/api/runs/" if _is_api(request) else "/runs/")
        if len(parts) == 3 and parts[2] == "log" and _is_api(request):
            data = await _in_thread(partial(views.run_log, root, *parts[:2], **_log(request)))
            return _JSON(data)
        if len(parts) != 2:
            raise NotFound("no such page: use /runs/APP/RUN_ID")
        if _is_api(request):
            return _JSON(await _in_thread(partial(views.run, root, *parts)))
        data = await _in_thread(partial(views.run_page, root, *parts, **_log(request)))
        return HTMLResponse(pages.run_page(data, _log(request), time.time()))

    async def sessions(request: Request) -> Response:
        query: dict[str, Any] = {
            "app": _param(request, "app"),
            "active": _bool_param(request, "active"),
            "limit": _int_param(request, "limit", DEFAULT_LIST_LIMIT),
        }
        data = await _in_thread(partial(views.sessions, root, **query))
        return reply(request, data, partial(pages.sessions_page, query=query))

    async def session(request: Request) -> Response:
        api = _is_api(request)
        parts = _segments(request, "/api/sessions/" if api else "/sessions/")
        if len(parts) == 3 and parts[2] == "timeline":
            before = _int_param(request, "before", None, 1 << 62)
            data = await _in_thread(partial(views.timeline, root, *parts[:2], before=before))
            return reply(request, data, pages.timeline_page)
        if len(parts) == 3 and parts[2] == "log" and api:
            data = await _in_thread(partial(views.session_log, root, *parts[:2], **_log(request)))
            return _JSON(data)
        if len(parts) != 2:
            raise NotFound("no such page: use /sessions/APP/SESSION_ID[/timeline]")
        if api:
            return _JSON(await _in_thread(partial(views.session, root, *parts)))
        data = await _in_thread(partial(views.session_page, root, *parts, **_log(request)))
        return HTMLResponse(pages.session_page(data, _log(request)))

    async def calls(request: Request) -> Response:
        day = _param(request, "date", 10)
        if day is not None and not _DATE_RE.fullmatch(day):
            raise BadRequest(f"date must be YYYY-MM-DD, not {day!r}")
        query: dict[str, Any] = {
            "app": _param(request, "app"),
            "date": day,
            "bot": _param(request, "bot"),
            "active": _bool_param(request, "active"),
            "limit": _int_param(request, "limit", DEFAULT_LIST_LIMIT),
        }
        data = await _in_thread(partial(views.calls, root, **query))
        return reply(request, data, partial(pages.calls_page, query=query))

    async def call(request: Request) -> Response:
        api = _is_api(request)
        parts = _segments(request, "/api/calls/" if api else "/calls/")
        if len(parts) == 4 and parts[3] == "log" and api:
            data = await _in_thread(partial(views.call_log, root, *parts[:3], **_log(request)))
            return _JSON(data)
        if len(parts) != 3:
            raise NotFound("no such page: use /calls/APP/YYYY-MM-DD/CALL_ID")
        if api:
            return _JSON(await _in_thread(partial(views.call, root, *parts)))
        data = await _in_thread(partial(views.call_page, root, *parts, **_log(request)))
        return HTMLResponse(pages.call_page(data, _log(request)))

    async def events(request: Request) -> Response:
        query = {key: _param(request, key) for key in ("app", "type", "since", "until", "session")}
        query.update(run=_param(request, "run"), call=_param(request, "call"))
        limit = _int_param(request, "limit", 1000)
        now = time.time()
        bounds = {}
        try:
            for key in ("since", "until"):
                value = query[key]
                bounds[key] = control.parse_time(value, now) if value is not None else None
        except ControlError as exc:
            raise BadRequest(exc.message) from None
        submitted = _is_api(request) or bool(request.query_params)
        data = (
            await _in_thread(partial(views.events, root, query, bounds, limit)) if submitted else []
        )
        return reply(request, data, partial(query_pages.events_page, query=query, limit=limit))

    async def status(request: Request) -> Response:
        data = await ask(str(settings.control), "status")
        return reply(request, data, query_pages.status_page)

    async def tail(request: Request) -> Response:
        args: dict[str, Any] = {
            key: _param(request, key) for key in ("app", "run", "session", "call", "events")
        }
        args["n"] = _int_param(request, "n", 100, 1000)
        return TailEvents(settings.control, {k: v for k, v in args.items() if v is not None})

    async def live(request: Request) -> Response:
        query = {key: _param(request, key) for key in ("app", "run", "session", "call", "events")}
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
            WebError: _on_web_error,
            HTTPException: _on_http_error,
            sqlite3.Error: _on_sqlite_error,
        },
    )
    return _Guard(app, settings.token)


def _log(request: Request) -> dict[str, Any]:
    """The log view's parameters: file, minimum level, text search, page offset."""
    level = _param(request, "level", 20)
    if level is not None and level.upper() not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}")
    return {
        "file": _param(request, "file", 300),
        "level": level.upper() if level else None,
        "q": _param(request, "q", 500),
        "before": _int_param(request, "before", None, 1 << 62),
    }


# --- the guard -----------------------------------------------------------------------


class _Guard:
    """Read-only, and only for whoever may look.

    With a token, every request must carry it (``Authorization: Bearer``, ``?token=``,
    or the cookie a ``?token=`` visit sets, so links and the live tail work in a
    browser). Without one the server is loopback-only, and a ``Host`` header that is
    not a loopback name is refused: a web page elsewhere cannot rebind its own domain to
    127.0.0.1 and read the logs (DNS rebinding).
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if scope["method"] not in ("GET", "HEAD"):
            await _error_reply(request, 405, "logd web is read-only")(scope, receive, send)
            return
        problem, set_cookie = self._check(request)
        if problem is not None:
            await _error_reply(request, *problem)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + _SECURITY_HEADERS
                if set_cookie is not None:
                    headers.append((b"set-cookie", set_cookie))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, request: Request) -> tuple[tuple[int, str] | None, bytes | None]:
        if self.token is None:
            host = request.headers.get("host", "")
            if not _LOOPBACK_HOST_RE.fullmatch(host):
                return (403, f"Host {host!r} is not a loopback name"), None
            return None, None
        offered = []
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            offered.append(auth[7:].strip())
        from_query = [v for k, v in parse_qsl(request.url.query) if k == "token"]
        offered += from_query
        if TOKEN_COOKIE in request.cookies:
            offered.append(unquote(request.cookies[TOKEN_COOKIE]))
        for value in offered:
            if hmac.compare_digest(value.encode("utf-8"), self.token):
                cookie = None
                if value in from_query:
                    # Quoted: a token is any string, a cookie value is not.
                    kept = quote(value, safe="")
                    cookie = f"{TOKEN_COOKIE}={kept}; HttpOnly; SameSite=Strict; Path=/".encode()
                return None, cookie
        return (401, "this logd web needs its token (Authorization: Bearer, or ?token=)"), None
