"""The two halves of systemd's daemon protocol, without libsystemd: sockets passed in
through ``LISTEN_FDS`` (sd_listen_fds(3)) and state sent to ``NOTIFY_SOCKET``
(sd_notify(3)). Standard library only; no trio, so the server decides when to call it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

__all__ = [
    "LISTEN_FDS_START",
    "ROLES",
    "Notifier",
    "listen_fds",
    "status_text",
    "watchdog_interval_s",
]

log = logging.getLogger("logd.systemd")

# SD_LISTEN_FDS_START in sd-daemon.h: passed descriptors begin right after stdio.
LISTEN_FDS_START = 3
# What logd uses inherited sockets for, in the order unnamed descriptors take them.
ROLES = ("ingest", "control")
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds(environ: Mapping[str, str], *, unset: bool = True) -> dict[str, list[socket.socket]]:
    """The sockets systemd (or ``systemd-socket-activate``) passed to this process.

    Follows sd_listen_fds(3): nothing is ours unless ``LISTEN_PID`` is our pid; the
    ``LISTEN_FDS`` descriptors start at 3; ``LISTEN_FDNAMES`` names them, ``:``
    separated. A descriptor named ``ingest`` or ``control`` is that; any other name
    (empty, ``unknown``, or a socket unit's default, its own unit name) counts as
    unnamed, and unnamed descriptors take the roles no descriptor claimed by name, in
    the order ``ingest``, ``control``. Descriptors left over keep their own name.

    Args:
        environ: the environment to read, normally ``os.environ``.
        unset: remove the three ``LISTEN_*`` variables from ``environ`` (when it is
            mutable; ``os.environ`` also updates the process environment), whatever
            the outcome, so child processes do not believe the sockets are theirs.

    Returns:
        Role or name -> sockets, in descriptor order; empty when nothing was passed.

    Raises:
        ValueError: ``LISTEN_PID`` or ``LISTEN_FDS`` is not a number, or a passed
            descriptor is not open or not a socket.

    Resource handling:
        Every returned socket is the caller's to close. The descriptors get
        ``FD_CLOEXEC``. They are duplicates of what the service manager keeps, so
        closing them leaves the socket (and its file) alive for the next start.
    """
    pid_text = environ.get("LISTEN_PID")
    count_text = environ.get("LISTEN_FDS")
    names_text = environ.get("LISTEN_FDNAMES")
    if unset and isinstance(environ, MutableMapping):
        for name in _LISTEN_VARS:
            environ.pop(name, None)
    if not pid_text or not count_text:
        return {}
    try:
        pid, count = int(pid_text), int(count_text)
    except ValueError:
        raise ValueError(
            f"LISTEN_PID={pid_text!r} LISTEN_FDS={count_text!r}: not numbers"
        ) from None
    if pid != os.getpid() or count <= 0:
        return {}
    names = names_text.split(":") if names_text else []
    names += [""] * (count - len(names))
    roles = _roles(names[:count])
    found: dict[str, list[socket.socket]] = {}
    for offset, role in enumerate(roles):
        fd = LISTEN_FDS_START + offset
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            for socks in found.values():
                for done in socks:
                    done.close()
            problem = {errno.ENOTSOCK: "is not a socket", errno.EBADF: "is not open"}
            if exc.errno in problem:
                raise ValueError(f"LISTEN_FDS: descriptor {fd} {problem[exc.errno]}") from None
            raise
        found.setdefault(role, []).append(sock)
    return found


def _roles(names: list[str]) -> list[str]:
    claimed = {name for name in names if name in ROLES}
    free = [role for role in ROLES if role not in claimed]
    roles = []
    for name in names:
        if name in ROLES:
            roles.append(name)
        elif free:
            roles.append(free.pop(0))
        else:
            roles.append(name or "unknown")
    return roles


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3)
    recommends, or None when the watchdog is off or meant for another process
    (``WATCHDOG_PID`` set to a pid that is not ours)."""
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """Sends sd_notify(3) state lines to the service manager's ``NOTIFY_SOCKET``.

    A no-op when ``NOTIFY_SOCKET`` is unset, so the daemon calls it unconditionally.

    Error handling:
        Never raises: a failed send is logged once and reported as False. The daemon
        must not die because its supervisor went away or its queue is full; a
        missed ``WATCHDOG=1`` is what systemd's own timeout is there to judge.

    Resource handling:
        Owns one datagram socket, opened on first use; ``close()`` releases it.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.address = _notify_address(environ.get("NOTIFY_SOCKET", ""))
        # How often the event loop should call watchdog(); None: no watchdog.
        self.watchdog_s = watchdog_interval_s(environ) if self.address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, raw: str | None = None, /, **fields: object) -> bool:
        """Send one message: ``raw`` lines as given, then ``KEY=value`` per field.

        Newlines in field values become spaces: each line is one assignment.
        Returns whether the message was handed to the kernel.
        """
        if self.address is None:
            return False
        lines = [raw] if raw else []
        lines += [f"{key}={_one_line(value)}" for key, value in fields.items()]
        message = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                # Non-blocking: the event loop calls this, and a full queue on the
                # manager's side must cost a dropped message, not a stalled loop.
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot notify the service manager at %s: %s (not repeated)",
                    _show_address(self.address),
                    exc.strerror or exc,
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """A one-line summary; ``systemctl status`` shows it."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """The event loop is alive."""
        return self.notify(WATCHDOG=1)

    def reloading(self) -> bool:
        """A reload starts; ``READY=1`` must follow when it is done.

        systemd 253+ (``Type=notify-reload``) matches the reload by ``MONOTONIC_USEC``
        and ignores a ``RELOADING=1`` without it; older versions ignore the field.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=now_usec)

    def extend_timeout(self, seconds: float) -> bool:
        """Startup (or stopping) needs up to ``seconds`` more from now; repeat it before
        that runs out, so TimeoutStartSec= judges progress rather than total time."""
        return self.notify(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def stopping(self) -> bool:
        """Shutdown has begun: systemd shows "deactivating" and stops the watchdog."""
        return self.notify(STOPPING=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _notify_address(value: str) -> str | bytes | None:
    # sd_notify(3): an absolute path, or "@name" for the abstract namespace. Other
    # forms (vsock:, newer systemd) are not for a local daemon like this one.
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value:
        log.warning("NOTIFY_SOCKET=%r is not a Unix socket address; not notifying", value)
    return None


def _show_address(address: str | bytes) -> str:
    if isinstance(address, bytes):
        return "@" + address[1:].decode(errors="replace")
    return address


def _one_line(value: object) -> str:
    return str(value).replace("\n", " ")


def status_text(statistics: Mapping[str, object]) -> str:
    """The ``STATUS=`` line, from the server's ``statistics()``: short enough for
    ``systemctl status``, and it changes only when something happened."""
    text = (
        f"{statistics.get('connections', 0)} connections, "
        f"{statistics.get('records_written', 0)} records written"
    )
    errors = statistics.get("errors")
    if isinstance(errors, Mapping) and errors:
        text += f", {sum(errors.values())} errors"
    return text
