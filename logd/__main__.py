"""`logd` / `logd serve`: run the daemon in the foreground; `logd demo`: see it work."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import socket as stdsocket
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import trio

from logd import __version__
from logd.config import Config, ConfigError, load_config
from logd.ingest.listeners import StartupError
from logd.server import LogdServer, serve_logd
from logd.systemd import Notifier, listen_fds, status_text
from logd.write.rootlock import RootLock, RootUnavailable, lock_root

log = logging.getLogger("logd")
# Net allocations between young-generation collections (the default is 700).
GC_THRESHOLD_0 = 20_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logd", description="The logd daemon: collects, routes and keeps your apps' logs."
    )
    parser.add_argument("--version", action="version", version=f"logd {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the daemon in the foreground (the default)")
    demo = sub.add_parser("demo", help="start a daemon in a temporary folder and log to it")
    demo.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    web = sub.add_parser("web", help="browse the logs and follow them live in a browser")
    web.add_argument("--listen", metavar="HOST:PORT", help="where to serve (127.0.0.1:8765)")
    web.add_argument("--root", help="the daemon's log root")
    web.add_argument("--control", help="the daemon's control socket")
    web.add_argument("--config", help="the daemon's TOML configuration file")
    web.add_argument("--token", help="required off loopback ($LOGD_WEB_TOKEN)")
    for target in (parser, serve):
        target.add_argument("--root", help="where log files go")
        target.add_argument("--socket", help="ingest Unix socket path")
        target.add_argument("--control", help="control socket path")
        target.add_argument("--tcp", metavar="HOST:PORT", help="also listen on TCP (loopback)")
        target.add_argument("--config", help="TOML configuration file")
        target.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `logd` command; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from logd.demo import run_demo

        return run_demo(keep=args.keep)
    if args.command == "web":
        from logd.web.server import run_web

        return run_web(
            listen=args.listen,
            root=args.root,
            control=args.control,
            config=args.config,
            token=args.token,
        )

    def read_config() -> Config:
        return load_config(
            config=args.config,
            root=args.root,
            socket=args.socket,
            control=args.control,
            tcp=args.tcp,
            environ=os.environ,
        )

    try:
        config = read_config()
    except ConfigError as exc:
        print(f"logd: {exc}", file=sys.stderr)
        return 2
    try:
        # Before logging: a refused daemon must not write into the running one's logd.log.
        root_lock = lock_root(config.root)
    except RootUnavailable as exc:
        print(f"logd: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        _setup_logging(config.root, verbose=args.verbose)
    except OSError as exc:
        print(f"logd: cannot write to {config.root}: {exc.strerror}", file=sys.stderr)
        return 1
    # Past a file-size limit, write(2) should fail with EFBIG (so the batch is not
    # acknowledged and is retried later) instead of SIGXFSZ killing the daemon.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        # Socket activation: fds 3.. are ours; take them (close-on-exec) before trio starts.
        inherited = listen_fds(os.environ)
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return 1
    _tune_gc()
    failures: list[str] = []
    try:
        trio.run(_serve_until_signal, config, inherited, read_config, root_lock)
    except* StartupError as group:
        failures = startup_failures(group)
    for failure in failures:
        log.error("cannot start: %s", failure)
    return 1 if failures else 0


def startup_failures(error: BaseException) -> list[str]:
    """The messages of the `StartupError`s in `error`, however deeply trio's nurseries
    nested them in exception groups, each once and in order."""
    if isinstance(error, BaseExceptionGroup):
        nested = [startup_failures(inner) for inner in error.exceptions]
        return list(dict.fromkeys(message for messages in nested for message in messages))
    return [str(error)] if isinstance(error, StartupError) else []


def _tune_gc() -> None:
    """Collect cycles less often: the daemon makes a few objects per record, all freed by
    reference counting, and the default thresholds ran a collection every few hundred
    records. What exists at start (modules, config) is frozen out of every collection.
    """
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, 20, 20)


async def _serve_until_signal(
    config: Config,
    inherited: dict[str, list[stdsocket.socket]] | None = None,
    read_config: Callable[[], Config] | None = None,
    root_lock: RootLock | None = None,
) -> None:
    notifier = Notifier(os.environ)
    server = LogdServer(config, inherited=inherited, notifier=notifier, root_lock=root_lock)
    server.read_config = read_config
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_logd, config, server=server))
            async for signum in signals:
                if signum == signal.SIGHUP:
                    server.notifier.reloading()
                    await _reload(server, read_config)
                    server.notifier.ready(status_text(server.statistics()))
                    continue
                log.info("%s received", signal.Signals(signum).name)
                server.request_stop()
                break


async def _reload(server: LogdServer, read_config: Callable[[], Config] | None) -> None:
    """SIGHUP: read the configuration again; a bad file keeps the running one."""
    if read_config is None:
        return
    try:
        await server.reload(read_config())
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
    except OSError as exc:
        log.error("reload failed: %s", exc)


class _OwnLog(logging.FileHandler):
    """`<root>/logd.log`, which sits on the disk the daemon fills with logs.

    Error handling: a line the disk refuses is dropped here (the stderr handler, the
    journal under systemd, has it), stderr is told once per episode instead of getting
    the stdlib's traceback for every line, and the file notes the gap once it can.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.missed = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)  # a bad format string is a bug: the stdlib reports it
            return
        try:
            if self.missed:
                line = self._gap_note() + line
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
        except OSError as exc:
            self._refused(exc)
            return
        self.missed = 0

    def _refused(self, exc: OSError) -> None:
        # What the buffer still holds would go out half-written with the next line.
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        if not self.missed:
            text = f"cannot write {self.baseFilename} ({exc.strerror}): its lines go to stderr only"
            sys.stderr.write(self.format(_record(logging.ERROR, text)) + self.terminator)
            sys.stderr.flush()
        self.missed += 1

    def _gap_note(self) -> str:
        note = f"{self.missed} line(s) missing here: the disk refused them (stderr has them)"
        text = self.format(_record(logging.WARNING, note)) + self.terminator
        try:
            with open(self.baseFilename, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    text = "\n" + text  # a line the disk cut short
        except OSError:
            pass
        return text


def _record(level: int, text: str) -> logging.LogRecord:
    return logging.LogRecord("logd", level, __file__, 0, text, None, None)


def _setup_logging(root: Path, *, verbose: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    own_file = _OwnLog(root / "logd.log")
    logger = logging.getLogger("logd")
    for handler in (stderr, own_file):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
