"""`logd web`'s process: settings from flags and config, who may listen where, and
hypercorn's trio worker serving the app until SIGINT or SIGTERM.

Starlette and hypercorn (the ``web`` extra) are imported only once `run_web` has checked
they are there, so `logd` itself never needs them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import cast

import trio

from logd.config import ConfigError, load_config
from logd.config.units import is_loopback_host, parse_hostport
from logd.ctl.cli import control_path
from logd.web import WebSettings

__all__ = ["DEFAULT_LISTEN", "INSTALL_HINT", "TOKEN_ENV", "run_web", "serve_web"]

DEFAULT_LISTEN = "127.0.0.1:8765"
TOKEN_ENV = "LOGD_WEB_TOKEN"
INSTALL_HINT = "logd web needs the web extra: pip install 'logd[web]'"
GRACEFUL_TIMEOUT_S = 3.0
EXIT_USAGE = 2


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
    if any(importlib.util.find_spec(name) is None for name in ("starlette", "hypercorn")):
        print(INSTALL_HINT, file=sys.stderr)
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

    settings = WebSettings(root=cfg.root, control=control_socket, token=token)
    trio.run(_serve_until_signal, settings, host, port)
    return 0


async def _serve_until_signal(settings: WebSettings, host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def until_signal() -> None:
            async for _ in signals:
                return

        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve_web, settings, host, port, until_signal)
            print(
                f"logd web: serving {', '.join(urls)} (root {settings.root}, "
                f"control {settings.control})",
                flush=True,
            )


async def serve_web(
    settings: WebSettings,
    host: str,
    port: int,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app on ``host:port`` until cancelled or ``shutdown_trigger`` returns.

    Reports the bound URLs (``["http://127.0.0.1:54321"]``) through
    ``task_status.started()``, so tests can listen on port 0.
    """
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve
    from hypercorn.typing import ASGIFramework

    from logd.web.app import create_app

    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.include_server_header = False
    config.accesslog = None
    # Starlette's ASGI aliases are looser than hypercorn's precise TypedDicts; same protocol.
    app = cast(ASGIFramework, create_app(settings))
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)
