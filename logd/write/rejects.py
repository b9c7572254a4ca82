"""The line kept for input that could not be routed: `_rejected/<day>.jsonl`.

Pure, like `routing`: the time is an argument. A rejected record is kept as it came
(or, when it cannot be JSON, as its repr) beside the reason and the peer it came from,
so an operator can see what a client sent and why it was not filed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from logd.index.eventline import iso_utc_ms
from logd.write.routing import Kind, Write, day_text, json_default

__all__ = ["rejected_write"]


def rejected_write(
    now_ns: int, reason: str, tag: str, raw: object, peer: Mapping[str, Any]
) -> Write:
    """The `_rejected/<day>.jsonl` line for input that could not be routed, with why."""
    obj = {
        "time": iso_utc_ms(now_ns),
        "reason": reason,
        "tag": tag,
        "peer": dict(peer),
        "record": raw if isinstance(raw, str) else _jsonable(raw),
    }
    line = json.dumps(obj, ensure_ascii=False, default=json_default) + "\n"
    return Write(Kind.REJECTED, f"_rejected/{day_text(now_ns, True)}.jsonl", line)


def _jsonable(raw: object) -> object:
    try:
        json.dumps(raw, default=json_default)
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(raw)[:10_000]
        except RecursionError:
            return "<too deeply nested to show>"
    return raw
