"""`logd web`'s process: settings from flags and config, who may listen where, and
hypercorn's trio worker serving the app until SIGINT or SIGTERM.

Starlette and hypercorn (the ``web`` extra) are imported only once `run_web` has checked
they are there, so `logd` itself never needs them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import cast

import trio

from logd.config import ConfigError, load_config
from logd.config.units import is_loopback_host, parse_hostport
from logd.ctl.cli import control_path
from logd.web import WebSettings

__all__ = ["DEFAULT_LISTEN", "TOKEN_ENV", "install_hint", "run_web", "serve_web"]

DEFAULT_LISTEN = "127.0.0.1:8765"
TOKEN_ENV = "LOGD_WEB_TOKEN"
WEB_MODULES = ("starlette", "hypercorn.trio")
GRACEFUL_TIMEOUT_S = 3.0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _web_extra_missing() -> bool:
    # Importing, not `find_spec`: a half-installed or shadowed package fails only here.
    try:
        for name in WEB_MODULES:
            importlib.import_module(name)
    except ImportError:
        return True
    return False


def install_hint(package_dir: Path, cwd: Path, python: str) -> str:
    """What to run to get the web extra, for the copy of logd at `package_dir`.

    A checkout (the package beside `pyproject.toml` and `client/`) is not on any package
    index: it installs itself, editable, with its client; an installed logd only needs
    the extra's packages added.
    """
    checkout = package_dir.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "client").is_dir():
        where = "." if checkout == cwd else os.fspath(checkout)
        command = f'{python} -m pip install -e "{where}/client" -e "{where}[web]"'
    else:
        command = f'{python} -m pip install "logd[web]"'
    return f"logd web needs the web extra (starlette, hypercorn): {command}"


def _python() -> str:
    """`python3` when that is this interpreter, else this interpreter's path (a venv)."""
    on_path = shutil.which("python3")
    if on_path and os.path.realpath(on_path) == os.path.realpath(sys.executable):
        return "python3"
    return sys.executable


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, for `serve_web`.

    Bound here rather than by hypercorn so that a busy port is one clear error before
    anything starts.

    Raises:
        OSError: the address is in use, not local, or does not resolve.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def run_web(
    *,
    listen: str | None = None,
    root: str | None = None,
    control: str | None = None,
    config: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Entry point of `logd web`; returns the exit code (2 for usage and refusals).

    Args:
        listen: ``HOST:PORT`` (default 127.0.0.1:8765; port 0 picks one).
        root, control, config: as for `logd serve`; the defaults are the daemon's.
        token: required off loopback; also read from ``$LOGD_WEB_TOKEN`` so it need
            not show in the process list.
    """
    if _web_extra_missing():
        package_dir = Path(__file__).resolve().parents[1]
        print(install_hint(package_dir, Path.cwd(), _python()), file=sys.stderr)
        return EXIT_USAGE
    listen = listen or DEFAULT_LISTEN
    try:
        host, port = parse_hostport(listen)
    except ValueError as exc:
        print(f"logd web: --listen {listen!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    token = token or environ.get(TOKEN_ENV) or None
    if not is_loopback_host(host) and token is None:
        print(
            f"logd web: refusing to listen on {host} (off loopback) without --token "
            f"(or ${TOKEN_ENV})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        cfg = load_config(config=config, root=root, control=control, environ=environ)
    except ConfigError as exc:
        print(f"logd web: {exc}", file=sys.stderr)
        return EXIT_USAGE
    control_socket = cfg.listen.control
    if control is None and not _is_socket(control_socket):
        # Like logd-ctl: a system-wide daemon's socket when the user has none running.
        control_socket = Path(control_path(None, environ))

    settings = WebSettings(root=cfg.root, control=control_socket, token=token, utc=cfg.layout.utc)
    try:
        sock = listen_socket(host, port)
    except OSError as exc:
        print(f"logd web: cannot listen on {listen}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    trio.run(_serve_until_signal, settings, sock)
    return 0


async def _serve_until_signal(settings: WebSettings, sock: socket.socket) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def until_signal() -> None:
            async for _ in signals:
                return

        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(serve_web, settings, shutdown_trigger=until_signal, sock=sock)
            )
            print(
                f"logd web: serving {', '.join(urls)} (root {settings.root}, "
                f"control {settings.control})",
                flush=True,
            )


async def serve_web(
    settings: WebSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    *,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app on ``host:port`` (or on `sock`, from `listen_socket`) until
    cancelled or ``shutdown_trigger`` returns.

    Reports the bound URLs (``["http://127.0.0.1:54321"]``) through
    ``task_status.started()``, so tests can listen on port 0.

    Resource handling: `sock` passes to hypercorn, which closes it.
    """
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve
    from hypercorn.typing import ASGIFramework

    from logd.web.app import create_app

    config = HypercornConfig()
    if sock is None:
        sock = listen_socket(host, port)
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.include_server_header = False
    config.accesslog = None
    # Starlette's ASGI aliases are looser than hypercorn's precise TypedDicts; same protocol.
    app = cast(ASGIFramework, create_app(settings))
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)
