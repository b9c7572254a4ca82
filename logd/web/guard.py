"""Who may look at `logd web`, and that it stays read-only: the token or loopback check,
and the security headers on every reply."""

from __future__ import annotations

import hmac
import re
from urllib.parse import parse_qsl, quote, unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logd.web.replies import error_reply

__all__ = ["TOKEN_COOKIE", "Guard"]

TOKEN_COOKIE = "logd_token"
_LOOPBACK_HOST_RE = re.compile(r"(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?", re.IGNORECASE)
_SECURITY_HEADERS = [
    # Scripts and styles come from /static only; the token must not leak in a Referer.
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Guard:
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
            await error_reply(request, 405, "logd web is read-only")(scope, receive, send)
            return
        problem, set_cookie = self._check(request)
        if problem is not None:
            await error_reply(request, *problem)(scope, receive, send)
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
