"""`logd web`'s request parameters: checked, bounded, and refused with one clear 400."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request

from logd.control.requests import MAX_LIMIT
from logd.web.data import MAX_ID_CHARS, BadRequest, NotFound
from logd.web.logview import LEVELS
from logd.web.timefmt import epoch_of

__all__ = [
    "bool_param",
    "int_param",
    "is_api",
    "log_args",
    "log_params",
    "param",
    "segments",
    "time_param",
]


def param(request: Request, name: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_chars:
        raise BadRequest(f"{name} is longer than {max_chars} characters")
    return value


def int_param(
    request: Request, name: str, default: int | None, high: int = MAX_LIMIT
) -> int | None:
    text = param(request, name, 20)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or int(text) > high:
        raise BadRequest(f"{name} must be a number from 0 to {high}")
    return int(text)


def bool_param(request: Request, name: str) -> bool | None:
    text = param(request, name, 8)
    if text is None:
        return None
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"{name} must be true or false")


def segments(request: Request, prefix: str) -> list[str]:
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


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def time_param(request: Request, name: str) -> float | None:
    """An ISO time (what the charts' links carry) as epoch seconds."""
    text = param(request, name, 40)
    if text is None:
        return None
    epoch = epoch_of(text)
    if epoch is None:
        raise BadRequest(f"{name} must be an ISO time like 2025-11-05T14:30:00Z")
    return epoch


def log_params(request: Request) -> dict[str, Any]:
    """The log view's parameters: file, minimum level, text search, page offset, and the
    time range a chart's bar narrows it to."""
    level = param(request, "level", 20)
    if level is not None and level.upper() not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}")
    return {
        "file": param(request, "file", 300),
        "level": level.upper() if level else None,
        "q": param(request, "q", 500),
        "before": int_param(request, "before", None, 1 << 62),
        "since": param(request, "since", 40),
        "until": param(request, "until", 40),
    }


def log_args(request: Request, utc: bool) -> dict[str, Any]:
    """`log_params` as `views` reads them: times as epochs, the layout's zone, a chart."""
    return {
        **log_params(request),
        "since": time_param(request, "since"),
        "until": time_param(request, "until"),
        "utc": utc,
        "chart": True,
    }
