"""Run, session and call ids of the producer.

Sessions and calls live in contextvars, so every thread and every asyncio task sees its
own; the run id is process-wide and shared with child processes through `LOGD_RUN_ID`.
No I/O here apart from reading and exporting that environment variable.
"""

from __future__ import annotations

import os
import secrets
from contextvars import ContextVar, Token
from datetime import datetime
from types import TracebackType

RUN_ID_ENV = "LOGD_RUN_ID"
DEFAULT_SESSION = "in-progress"

_session_var: ContextVar[str | None] = ContextVar("logd_session_id", default=None)
# (call_id, bot_id), set together so a record never carries half of a call.
_call_var: ContextVar[tuple[str, str] | None] = ContextVar("logd_call", default=None)

_run_id: str | None = None
_run_owner_pid: int | None = None


def check_id(kind: str, value: object) -> str:
    """Refuse a non-str or empty id at the call site rather than losing records later.

    Args:
        kind: what the id is, for the message (`"session_id"`).
        value: the id given by the caller.

    Returns:
        `value`, typed as str.

    Raises:
        TypeError: `value` is not a str.
        ValueError: `value` is empty.
    """
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{kind} must not be empty")
    return value


def session_id_or_none() -> str | None:
    """The session of the current context, None outside `session()`."""
    return _session_var.get()


def current_session() -> str:
    """Return the session id of the current thread or task.

    Returns:
        The innermost `session()` id, or `"in-progress"` outside any session.
    """
    session_id = _session_var.get()
    return DEFAULT_SESSION if session_id is None else session_id


def current_call() -> tuple[str, str] | None:
    """The (call_id, bot_id) of the current context, None outside `call()`."""
    return _call_var.get()


class session:  # lower case: used as `with logd.session(id):`, like a function
    """Context manager that makes `session_id` the session of every record in its scope.

    The id is checked when the object is created, so a mistake raises at the call site.
    It only sets the context: the daemon creates a session at its first record, and
    `end_session()` ends it. Nesting works; the innermost session wins.

    Args:
        session_id: a non-empty str.

    Raises:
        TypeError: `session_id` is not a str.
        ValueError: `session_id` is empty.
    """

    __slots__ = ("_session_id", "_tokens")

    def __init__(self, session_id: str) -> None:
        self._session_id = check_id("session_id", session_id)
        # A stack, so the same object may be entered again while already entered.
        self._tokens: list[Token[str | None]] = []

    @property
    def session_id(self) -> str:
        """The id this scope sets."""
        return self._session_id

    def __enter__(self) -> str:
        self._tokens.append(_session_var.set(self._session_id))
        return self._session_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _session_var.reset(self._tokens.pop())


def push_call(call_id: str, bot_id: str) -> Token[tuple[str, str] | None]:
    """Make (call_id, bot_id) the call of the current context; undo with `pop_call()`."""
    return _call_var.set((call_id, bot_id))


def pop_call(token: Token[tuple[str, str] | None]) -> None:
    """Restore the call that was current before the matching `push_call()`."""
    _call_var.reset(token)


def new_run_id(now: datetime) -> str:
    """Return a fresh run id, `YYYYMMDD_HHMMSS_<8 hex>`, for the given local time."""
    return f"{now:%Y%m%d_%H%M%S}_{secrets.token_hex(4)}"


def run_id() -> str | None:
    """Return the run this process logs into.

    Returns:
        The run id once `install()` (or a `LogdHandler`) opened or joined a run, else None.
    """
    return _run_id


def open_run() -> bool:
    """Open or join the process's run; idempotent.

    A process that finds `LOGD_RUN_ID` joins that run (its parent opened it). Otherwise a
    new id is made and exported, so children started later join it.

    Returns:
        True iff this call opened a new run, so the caller must send `app:start` and,
        at exit, `app:shutdown`.
    """
    global _run_id, _run_owner_pid
    if _run_id is not None:
        return False
    inherited = os.environ.get(RUN_ID_ENV, "")
    if inherited:
        _run_id = inherited
        return False
    _run_id = new_run_id(datetime.now())
    _run_owner_pid = os.getpid()
    os.environ[RUN_ID_ENV] = _run_id
    return True


def owns_run() -> bool:
    """True iff this very process opened the run (a forked child joined it instead)."""
    return _run_owner_pid is not None and _run_owner_pid == os.getpid()


def forget_run() -> None:
    """Forget the run id without touching the environment (used by tests)."""
    global _run_id, _run_owner_pid
    _run_id = None
    _run_owner_pid = None
