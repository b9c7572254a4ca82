"""How `logd web` answers: JSON as `logd-ctl --json` prints it, and errors as a page or
as ``{"error": ...}`` depending on who asked."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from logd.web import pages
from logd.web.data import WebError
from logd.web.params import is_api

__all__ = ["JSON", "error_reply", "on_http_error", "on_sqlite_error", "on_web_error"]


class JSON(JSONResponse):
    """JSON as `logd-ctl --json` prints it (non-ASCII kept, odd values as strings)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=str).encode("utf-8")


def error_reply(request: Request, status: int, message: str) -> Response:
    if is_api(request):
        return JSON({"error": message}, status_code=status)
    return HTMLResponse(pages.error_page(status, message), status_code=status)


async def on_web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    return error_reply(request, exc.status, exc.message)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "no such page" if exc.status_code == 404 else str(exc.detail)
    return error_reply(request, exc.status_code, message)


async def on_sqlite_error(request: Request, exc: Exception) -> Response:
    return error_reply(request, 503, f"the index could not be read right now: {exc}")
