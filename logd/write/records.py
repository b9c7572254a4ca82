"""Turn a decoded Forward entry into a typed `Record`, or say why it cannot be routed.

Pure: no I/O, no clock. This is the only place that knows the record conventions of
SPEC §3 (which keys mean what, which aliases are accepted, what a level is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from logd.index.eventline import EVENT_TYPE_RE
from logd.index.levels import LEVEL_NAMES as _LEVEL_NAMES
from logd.index.levels import LEVELS

_LEVEL_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")

_MSG_KEYS = ("msg", "message", "log")
_LOGGER_KEYS = ("logger", "source")
_ID_KEYS = ("app", "run_id", "session_id", "call_id", "bot_id")
_KNOWN = frozenset(
    (
        *_MSG_KEYS,
        *_LOGGER_KEYS,
        *_ID_KEYS,
        "level",
        "event_type",
        "kv",
        "pid",
        "thread",
        "thread_name",
        "exc",
    )
)
MAX_ID_CHARS = 4096
MAX_DEPTH = 32
MAX_TIME_NS = 253_402_300_799 * 1_000_000_000  # 9999-12-31T23:59:59Z


class Unroutable(ValueError):
    """A record whose shape or types leave no sensible place to store it."""


@dataclass(slots=True)
class Record:
    """One log record in the daemon's terms; `time_ns` is the producer's clock."""

    time_ns: int
    app: str
    logger: str
    level: str
    levelno: int
    msg: str
    run_id: str | None = None
    session_id: str | None = None
    call_id: str | None = None
    bot_id: str | None = None
    event_type: str | None = None
    kv: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    thread: int | None = None
    thread_name: str | None = None
    exc: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        return self.event_type is not None

    def again(self, time_ns: int, msg: str) -> Record:
        """This plain record (no kv, no extra fields) with another time and message.

        Positional, which is several times cheaper than keywords in the hot loop.
        """
        return Record(
            time_ns,
            self.app,
            self.logger,
            self.level,
            self.levelno,
            msg,
            self.run_id,
            self.session_id,
            self.call_id,
            self.bot_id,
            self.event_type,
            {},
            self.pid,
            self.thread,
            self.thread_name,
            self.exc,
            {},
        )


def app_from_tag(tag: str) -> str:
    """The default app of a record: the first dot-part of its Forward tag."""
    return tag.split(".", 1)[0] or "unknown"


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    return str(value)


def _ident(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if value.__class__ is str and 0 < len(value) <= MAX_ID_CHARS:
        return value  # the common case, decided without the checks below
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Unroutable(f"{key} must be a string, not {type(value).__name__}")
    text = str(value)
    if not text:
        return None
    if len(text) > MAX_ID_CHARS:
        raise Unroutable(f"{key} is longer than {MAX_ID_CHARS} characters")
    return text


_LEVEL_OF: dict[object, tuple[str, int]] = {
    name: ("WARNING" if name == "WARN" else name, number) for name, number in LEVELS.items()
}


def _level(value: object) -> tuple[str, int]:
    known = _LEVEL_OF.get(value) if value.__class__ is str else None
    if known is not None:
        return known
    if value is None:
        return "INFO", 20
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool):
        raise Unroutable("level must be a name or a number, not a boolean")
    if isinstance(value, int):
        name = _LEVEL_NAMES.get(value, f"Level {value}")
        return name, value
    if isinstance(value, str):
        upper = value.strip().upper()
        if upper in LEVELS:
            return ("WARNING" if upper == "WARN" else upper), LEVELS[upper]
        if _LEVEL_WORD_RE.fullmatch(upper):
            return upper, 20
    raise Unroutable(f"level {value!r} is not a level name or number")


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None or value.__class__ is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise Unroutable(f"{key} must be an integer, not {type(value).__name__}")


# The keys logd_client sends for a plain log call: records made of these alone, with the
# types the client gives them, take `_plain()`'s shortcut through normalize().
_PLAIN_KEYS = frozenset(
    {"msg", "level", "logger", "app", "run_id", "session_id", "call_id", "bot_id"}
    | {"pid", "thread", "thread_name"}
)


def normalize(tag: str, time_ns: int, raw: object) -> Record:
    """Interpret one entry's record map.

    Args:
        tag: the Forward tag the entry arrived under.
        time_ns: the entry's time in nanoseconds since the epoch.
        raw: the record as decoded; anything but a map is unroutable.

    Raises:
        Unroutable: with a one-line reason, for the `_rejected/` file.
    """
    return _shortcut(tag, time_ns, raw) or _general(tag, time_ns, raw)


def _shortcut(tag: str, time_ns: int, raw: object) -> Record | None:
    """`_plain()`'s record when `raw` is made of logd_client's keys only, else None."""
    if isinstance(raw, dict) and raw.__class__ is dict and raw.keys() <= _PLAIN_KEYS:
        return _plain(tag, time_ns, raw)
    return None


def same_but_msg(last_raw: dict[str, Any], time_ns: int, raw: object) -> bool:
    """Whether `raw` at `time_ns` equals `last_raw`, a map that took `_plain()`'s shortcut,
    but for its message: then it normalises to that record with its own time and message.
    """
    if raw.__class__ is not dict or not 0 <= time_ns <= MAX_TIME_NS:
        return False
    assert isinstance(raw, dict)
    msg, pid, thread = raw.get("msg"), raw.get("pid"), raw.get("thread")
    if (
        msg.__class__ is not str
        or (pid is not None and pid.__class__ is not int)
        or (thread is not None and thread.__class__ is not int)
    ):
        return False
    raw["msg"] = last_raw["msg"]
    same = raw == last_raw
    raw["msg"] = msg
    return same


class Normalizer:
    """`normalize()` for the entries of one message, noticing repeats.

    A producer's records mostly differ from the one before only in time and message. When
    a record's map equals the previous one's but for `msg`, and that one took `_plain()`'s
    shortcut (so its values are all str, int or None, where equal means same type, save
    for the ints checked here), it normalises to that record with its own time and
    message: `repeats()` says so, and the caller can reuse what it worked out for `last`.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._last_raw: dict[str, Any] | None = None
        self.last: Record | None = None

    def repeats(self, time_ns: int, raw: object) -> bool:
        """Whether `raw` at `time_ns` is the previous record again but for its message.

        Then its record is `last.again(time_ns, raw["msg"])`, which a caller may build only
        if it needs more than what `last` already says.
        """
        last_raw = self._last_raw
        return last_raw is not None and same_but_msg(last_raw, time_ns, raw)

    def __call__(self, time_ns: int, raw: object) -> Record:
        """The record of one entry; it becomes `last` when it took `_plain()`'s shortcut.

        Raises:
            Unroutable: as `normalize()` does.
        """
        record = _shortcut(self.tag, time_ns, raw)
        if record is None or not isinstance(raw, dict) or "msg" not in raw:
            self._last_raw = self.last = None
            return _general(self.tag, time_ns, raw)
        self._last_raw, self.last = raw, record
        return record


def _plain(tag: str, time_ns: int, raw: dict[str, Any]) -> Record | None:
    """The record of a plain log call, or None to leave it to `_general()`.

    Same result as `_general()` for what it accepts (a test holds them to that): it only
    skips the checks that cannot fail for the types it finds.
    """
    get = raw.get
    msg, logger, level = get("msg", ""), get("logger"), get("level", "INFO")
    app, run_id, session_id = get("app"), get("run_id"), get("session_id")
    call_id, bot_id = get("call_id"), get("bot_id")
    pid, thread, thread_name = get("pid"), get("thread"), get("thread_name")
    known = _LEVEL_OF.get(level) if level.__class__ is str else None
    if (
        known is None
        or msg.__class__ is not str
        or logger.__class__ is not str
        or not logger
        or not 0 <= time_ns <= MAX_TIME_NS
        or (pid is not None and pid.__class__ is not int)
        or (thread is not None and thread.__class__ is not int)
        or (thread_name is not None and thread_name.__class__ is not str)
    ):
        return None
    for ident in (app, run_id, session_id, call_id, bot_id):
        if ident is not None and (ident.__class__ is not str or not 0 < len(ident) <= MAX_ID_CHARS):
            return None
    return Record(
        time_ns,
        app or app_from_tag(tag),
        logger,
        known[0],
        known[1],
        msg,
        run_id,
        session_id,
        call_id,
        bot_id,
        None,
        {},
        pid,
        thread,
        thread_name,
        None,
        {},
    )


def _general(tag: str, time_ns: int, raw: object) -> Record:
    if not isinstance(raw, dict):
        raise Unroutable(f"record is a {type(raw).__name__}, not a map")
    if not 0 <= time_ns <= MAX_TIME_NS:
        raise Unroutable(f"time {time_ns} ns is outside 1970..9999")
    msg = raw.get("msg")
    if msg.__class__ is not str:
        msg = ""
        for key in _MSG_KEYS:
            if key in raw:
                msg = _text(raw[key])
                break
    logger = raw.get("logger")
    if logger.__class__ is not str:
        logger = None
        for key in _LOGGER_KEYS:
            if raw.get(key) is not None:
                logger = _text(raw[key])
                break
    level, levelno = _level(raw.get("level"))
    event_type = raw.get("event_type")
    if event_type is not None:
        if isinstance(event_type, bytes):
            event_type = event_type.decode("utf-8", "replace")
        if not isinstance(event_type, str) or not EVENT_TYPE_RE.fullmatch(event_type):
            raise Unroutable(f"event_type {event_type!r} is not category:action")
    kv = raw.get("kv")
    if kv is None:
        kv = {}
    elif kv.__class__ is not dict:
        raise Unroutable(f"kv must be a map, not {type(kv).__name__}")
    elif not all(k.__class__ is str for k in kv):
        kv = {str(k): v for k, v in kv.items()}
    exc = raw.get("exc")
    app = _ident(raw, "app") or app_from_tag(tag)
    # A subset test allocates nothing, and records with no extra fields are the rule.
    extra = {} if raw.keys() <= _KNOWN else {k: v for k, v in raw.items() if k not in _KNOWN}
    if (kv and _has_containers(kv) and _too_deep(kv)) or (
        extra and _has_containers(extra) and _too_deep(extra)
    ):
        raise Unroutable(f"record nests deeper than {MAX_DEPTH} levels")
    thread_name = raw.get("thread_name")
    return Record(
        time_ns,
        app,
        logger if logger else tag,
        level,
        levelno,
        msg,
        _ident(raw, "run_id"),
        _ident(raw, "session_id"),
        _ident(raw, "call_id"),
        _ident(raw, "bot_id"),
        event_type,
        kv,
        _optional_int(raw, "pid"),
        _optional_int(raw, "thread"),
        _text(thread_name) if thread_name is not None else None,
        _text(exc) if exc else None,
        extra,
    )


def _has_containers(values: dict[str, Any]) -> bool:
    return any(v.__class__ in (dict, list) for v in values.values())


def _too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether containers nest past `limit`; iterative, so hostile depth cannot recurse."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def exception_summary(exc_text: str) -> str:
    """`ExcType: text` from a formatted traceback, for the `error:runtime` event.

    The exception line is the first unindented line after the frames of the last
    `Traceback` block; a multi-line message is joined with spaces.
    """
    lines = exc_text.rstrip("\n").splitlines()
    header = max((i for i, line in enumerate(lines) if line.startswith("Traceback")), default=-1)
    if header < 0:
        return lines[-1].strip() if lines else ""
    for index in range(header + 1, len(lines)):
        if lines[index] and not lines[index][0].isspace():
            return " ".join(line.strip() for line in lines[index:] if line.strip())
    return lines[-1].strip()
