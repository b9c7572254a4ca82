"""Shared helpers of the benchmark scripts: servers in subprocesses, /proc readings, tables.

Every process started here is stopped by its context manager, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Self

REPO = Path(__file__).resolve().parents[2]
APP = "bench"
MESSAGE = "processing request"
# Rotation is raised so every record of a run stays in one file and can be counted;
# routing, fsync and everything else keep their defaults.
BENCH_CONFIG = '[rotation.run]\nmax_bytes = "64 GiB"\n'
X = "\u00d7"  # the "times" sign of ratio columns
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one round")
    p.add_argument("--rounds", type=int, default=None, help="rounds (quick: 1)")
    return p


def rounds(args: argparse.Namespace, full: int = 5, quick: int = 1) -> int:
    """The number of rounds asked for, else the default of the mode."""
    if args.rounds is not None:
        return max(1, int(args.rounds))
    return quick if args.quick else full


# --------------------------------------------------------------------------- environment


def child_env(address: str | None = None, folder: Path | None = None) -> dict[str, str]:
    """The environment of a child: no inherited LOGD_*, the daemon's address if given.

    The repository and its `client/` come first on PYTHONPATH, so the code measured is
    this checkout's even when the editable install points at another one.

    With `folder`, the client's spool and cache go there, so no spool of another run is
    picked up (and delivered) and none is left behind.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    # The repository's own daemon and client, whichever checkout pip installed.
    paths = [str(REPO), str(REPO / "client"), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    if address is not None:
        env["LOGD_ADDRESS"] = address
    if folder is not None:
        env["LOGD_SPOOL_DIR"] = str(folder / "spool")
        env["XDG_CACHE_HOME"] = str(folder / "cache")
    return env


@contextlib.contextmanager
def scratch(prefix: str = "lb-") -> Iterator[Path]:
    """A short folder under /tmp (sun_path holds 107 bytes), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------- /proc


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_kib(pid: int | str, key: str = "VmRSS") -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM...), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def header(title: str, quick: bool) -> str:
    """Title, date and machine lines printed above each table."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mode = " (--quick: smoke sizes, figures not meaningful)" if quick else ""
    return (
        f"== {title}{mode}\n"
        f"{now} | nproc {os.cpu_count()} | {cpu_model()} | "
        f"Python {platform.python_version()} | {platform.system()} {platform.release()}"
    )


# --------------------------------------------------------------------------- servers


def connectable(path: Path) -> bool:
    """Whether a Unix socket accepts connections."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


class Server:
    """A server process listening on a Unix socket in `folder`; a context manager.

    Args:
        folder: a scratch folder (short path) for the socket, files and stderr.
        command: the argv, run with the repository on PYTHONPATH.
        socket_path: the socket to wait for.
    """

    name = "server"

    def __init__(self, folder: Path, command: list[str], socket_path: Path) -> None:
        self.folder = folder
        self.command = command
        self.socket = socket_path
        self.stderr_path = folder / f"{self.name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The `LOGD_ADDRESS` of the server."""
        return f"unix:{self.socket}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        """What the server wrote on stderr so far."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def env(self) -> dict[str, str]:
        """The server's environment: `child_env()` with its own spool folder."""
        return child_env(folder=self.folder)

    def start(self, timeout: float = 30.0) -> Server:
        """Start the process and wait until its socket accepts connections."""
        with open(self.stderr_path, "wb") as err:
            # Its own spool folder: a daemon delivers the orphan spools it finds at
            # start, and records spooled by anything else on the machine are not ours.
            self.proc = subprocess.Popen(
                self.command,
                env=self.env(),
                stderr=err,
                stdout=subprocess.DEVNULL,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while not connectable(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not start:\n{self.stderr()}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, wait, kill if it does not exit; returns the exit code."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """Kill the process if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def main_logs(self) -> list[Path]:
        """The files holding the server's main lines."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()


class Daemon(Server):
    """`python -m logd serve` with the benchmark config.

    `profile` (a path prefix) runs it under `tests.bench.profile_daemon` instead.
    """

    name = "logd"

    def __init__(
        self,
        folder: Path,
        *,
        tcp: bool = False,
        fsync: str | None = None,
        profile: Path | None = None,
        config_text: str = "",
    ) -> None:
        self.root = folder / "root"
        config = folder / "logd.toml"
        text = BENCH_CONFIG + config_text
        if fsync is not None:
            text += f'[durability]\nfsync = "{fsync}"\n'
        config.write_text(text)
        command = [sys.executable, "-m", "logd"]
        if profile is not None:
            command[2:] = ["tests.bench.profile_daemon", "--out", str(profile)]
        command += ["serve", "--root", str(self.root), "--config", str(config)]
        command += ["--socket", str(folder / "s"), "--control", str(folder / "c")]
        if tcp:
            command += ["--tcp", "127.0.0.1:0"]
        self.tcp = tcp
        self.tcp_port: int | None = None
        super().__init__(folder, command, folder / "s")

    def start(self, timeout: float = 30.0) -> Daemon:
        """Start, wait for both sockets and, with `tcp`, read the port from stderr."""
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while not connectable(self.folder / "c"):  # bound after the ingest socket
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"logd opened no control socket:\n{self.stderr()}")
            time.sleep(0.02)
        if self.tcp:
            deadline = time.monotonic() + timeout
            while (found := re.search(r"tcp://127\.0\.0\.1:(\d+)", self.stderr())) is None:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"logd printed no TCP address:\n{self.stderr()}")
                time.sleep(0.02)
            self.tcp_port = int(found.group(1))
        return self

    def main_logs(self) -> list[Path]:
        """Every run's main.log under the benchmark app (not through `runs/current`)."""
        runs = (self.root / APP / "runs").iterdir()
        return sorted(d / "main.log" for d in runs if d.is_dir() and not d.is_symlink())


class BareServer(Server):
    """`tests/bench/bare_server.py`: the reference that decodes, appends one line, acks."""

    name = "bare"

    def __init__(self, folder: Path, *args: str) -> None:
        self.out = folder / "bare.log"
        command = [sys.executable, "-m", "tests.bench.bare_server"]
        command += ["--socket", str(folder / "s"), "--out", str(self.out), *args]
        super().__init__(folder, command, folder / "s")

    def main_logs(self) -> list[Path]:
        """The one file the bare server writes."""
        return [self.out]


def count_lines(paths: Iterable[Path], needle: str = MESSAGE) -> int:
    """Lines containing `needle` across files (read in binary, chunked)."""
    pattern = needle.encode()
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                if pattern in line:
                    total += 1
    return total


# --------------------------------------------------------------------------- producers


class Producers:
    """Producer processes (`tests.bench.producer`) that start together on "go".

    Each prints `ready` after its warm-up, waits for `go` on stdin, does its work and
    prints one JSON line. A context manager: every process is killed on the way out.
    """

    def __init__(self, argvs: Sequence[list[str]], env: dict[str, str]) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self._errs: list[IO[str]] = []
        self._files = contextlib.ExitStack()
        try:
            for argv in argvs:
                # Closed by the ExitStack in close().
                err = self._files.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
                self._errs.append(err)
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tests.bench.producer", *argv],
                        env=env,
                        cwd=REPO,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )
        except BaseException:
            self.close()
            raise

    def _stderr(self, index: int) -> str:
        err = self._errs[index]
        err.seek(0)
        return err.read()

    def _line(self, index: int) -> str:
        proc = self.procs[index]
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(
                f"producer exited {proc.returncode} early:\n{self._stderr(index)[-3000:]}"
            )
        return line.strip()

    def run(
        self, timeout: float = 600.0, on_go: Callable[[], object] | None = None
    ) -> list[dict[str, Any]]:
        """Wait for every `ready`, call `on_go`, send `go` to all, return their JSON results."""
        for i in range(len(self.procs)):
            if (line := self._line(i)) != "ready":
                raise RuntimeError(f"producer said {line!r}")
        if on_go is not None:
            on_go()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(self._line(i)) for i in range(len(self.procs))]
        for i, proc in enumerate(self.procs):
            if proc.wait(timeout=timeout) != 0:
                raise RuntimeError(f"producer exited {proc.returncode}:\n{self._stderr(i)}")
        return results

    def close(self) -> None:
        """Kill what still runs and close the pipes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._files.close()

    def __enter__(self) -> Producers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- tables


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of the values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: numeric columns right-aligned, the others left-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def goal(what: str, value: float, limit: float, *, at_most: bool = True, unit: str = "") -> str:
    """One goal line: `what  value (goal <= limit) ✓/✗`; never asserted."""
    ok = value <= limit if at_most else value >= limit
    sign = "≤" if at_most else "≥"
    mark = "✓" if ok else "✗"
    return f"  {mark} {what}: {_number(value)}{unit} (goal {sign} {_number(limit)}{unit})"


def _number(value: float) -> str:
    if value == int(value) and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def emit(text: str = "") -> None:
    """Print and flush at once, so progress shows when piped."""
    print(text, flush=True)
