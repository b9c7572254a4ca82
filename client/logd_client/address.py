"""Where the client finds the daemon's ingest socket.

Parses `unix:/path`, `tcp://host:port` and bare absolute paths, and picks the default
socket. Only the default lookup touches the filesystem (one stat), so it is redone at
every connection attempt: a user daemon started after the app is still found.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

ADDRESS_ENV = "LOGD_ADDRESS"
SYSTEM_SOCKET = "/run/logd/logd.sock"


@dataclass(frozen=True)
class UnixAddress:
    """A Unix stream socket path."""

    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TcpAddress:
    """A TCP host and port (the host may be a name, an IPv4 or an IPv6 literal)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


Address = UnixAddress | TcpAddress


def parse_address(text: str) -> Address:
    """Parse an address as written in `LOGD_ADDRESS` or passed to `install()`.

    Args:
        text: `unix:/path` (also `unix:///path`), `tcp://host:port` (IPv6 as
            `tcp://[::1]:24224`) or an absolute path.

    Returns:
        The parsed address.

    Raises:
        TypeError: `text` is not a str.
        ValueError: `text` is none of the accepted forms.
    """
    if not isinstance(text, str):
        raise TypeError(f"logd address must be a str, not {type(text).__name__}")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError(f"logd address {text!r}: a unix socket path must be absolute")
        return UnixAddress(path)
    if text.startswith("tcp://"):
        return _parse_tcp(text)
    if text.startswith("/"):
        return UnixAddress(text)
    raise ValueError(
        f"logd address {text!r}: expected unix:/path, tcp://host:port or an absolute path"
    )


def _parse_tcp(text: str) -> TcpAddress:
    rest = text[len("tcp://") :].rstrip("/")
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]:")
    else:
        host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"logd address {text!r}: expected tcp://host:port")
    return TcpAddress(host, int(port_text))


def configured_address(
    address: str | None, environ: Mapping[str, str] | None = None
) -> Address | None:
    """Return the explicitly configured address, or None to mean "the default socket".

    Args:
        address: the argument given by the app; wins over the environment.
        environ: where to look for `LOGD_ADDRESS` (default: `os.environ`).

    Returns:
        The parsed address, or None when neither the argument nor the environment names
        one. None is resolved by `default_address()` at each connection attempt.

    Raises:
        ValueError: the argument or `LOGD_ADDRESS` cannot be parsed. A typo here would
            otherwise lose every record silently, so it fails at install time.
    """
    if address is not None:
        return parse_address(address)
    env = os.environ if environ is None else environ
    text = env.get(ADDRESS_ENV, "")
    if not text:
        return None
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ValueError(f"{ADDRESS_ENV}: {exc}") from None


def user_runtime_dir() -> str:
    """platformdirs' `user_runtime_dir("logd")`, without its `RuntimeDirWarning`.

    Newer platformdirs warns when `XDG_RUNTIME_DIR` is unset (cron, root shells,
    containers) and falls back to a /tmp path; every app and child process would print
    it, and we only probe the path. The daemon silences it the same way.

    Raises:
        OSError: platformdirs could not make its fallback directory.
    """
    # Imported here: platformdirs is only needed when no address is configured.
    import platformdirs

    category: type[Warning] = getattr(platformdirs, "RuntimeDirWarning", UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        return platformdirs.user_runtime_dir("logd")


def default_address() -> UnixAddress:
    """The default ingest socket: the user's daemon if its socket exists, else the system one.

    Returns:
        `user_runtime_dir("logd")/logd.sock` when that path is a socket, else
        `/run/logd/logd.sock`.
    """
    user_socket = os.path.join(user_runtime_dir(), "logd.sock")
    try:
        if stat.S_ISSOCK(os.stat(user_socket).st_mode):
            return UnixAddress(user_socket)
    except OSError:
        pass
    return UnixAddress(SYSTEM_SOCKET)
