"""The campaign's real `python3 -m logd serve` process and `logd-ctl` calls to it.

No pytest here: the campaign is a script first. A start reports failure instead of
raising (a daemon may rightly refuse to start, e.g. on a full disk), and every stop
records how the process ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.e2e.procs import connectable

REPO = Path(__file__).resolve().parents[2]
ROTATE_AT_BYTES = 262144
CONFIG = """\
# Small files and many backups: rotation and compression run all the time, and no
# acknowledged record is ever rotated away before the scan. ROTATE_AT_BYTES below.
[rotation.run]
max_bytes = 262144
backups = 100000
compress = true

[rotation.session]
max_bytes = 262144
backups = 100000
compress = true

[layout]
utc = true
"""


def campaign_env(base: Path) -> dict[str, str]:
    """The environment of the daemon and producers: sockets, spool and caches under `base`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = f"unix:{base / 'logd.sock'}"
    env["LOGD_SPOOL_DIR"] = str(base / "spool")
    env["XDG_RUNTIME_DIR"] = str(base)
    env["XDG_CACHE_HOME"] = str(base / "cache")
    return env


@dataclass
class Daemon:
    """Starts, kills and stops the daemon; counts what happened to it."""

    base: Path
    root: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    start_failures: int = 0
    kills: int = 0
    stops: int = 0
    unclean_stops: list[int] = field(default_factory=list)
    # (signal sent, process gone) in wall-clock seconds, for every time the daemon went down.
    downs: list[tuple[float, float]] = field(default_factory=list)
    _copiers: list[threading.Thread] = field(default_factory=list)

    @property
    def control(self) -> Path:
        return self.base / "ctl.sock"

    @property
    def stderr_path(self) -> Path:
        return self.base / "daemon.stderr"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, preexec: Callable[[], None] | None = None, timeout_s: float = 20.0) -> bool:
        """Start a daemon and wait until its ingest socket accepts; False if it exited."""
        assert self.proc is None, "a daemon is already running"
        config = self.base / "logd.toml"
        config.write_text(CONFIG, encoding="utf-8")
        command = [sys.executable, "-m", "logd", "serve", "--root", str(self.root)]
        command += ["--socket", str(self.base / "logd.sock"), "--control", str(self.control)]
        command += ["--config", str(config)]
        # Through a pipe: under RLIMIT_FSIZE the daemon could not append to a file (nor
        # can it under systemd, whose journal is a socket too).
        proc = subprocess.Popen(
            command, env=self.env, stderr=subprocess.PIPE, preexec_fn=preexec, cwd=REPO
        )
        assert proc.stderr is not None
        copier = threading.Thread(target=_copy, args=(proc.stderr, self.stderr_path), daemon=True)
        copier.start()
        self._copiers.append(copier)
        deadline = time.monotonic() + timeout_s
        while not connectable(self.base / "logd.sock"):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                self.start_failures += 1
                return False
            time.sleep(0.05)
        self.proc = proc
        self.starts += 1
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        assert self.proc is not None
        signalled = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.downs.append((signalled, time.time()))
        self.proc = None
        self.kills += 1

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; a daemon that does not exit in time is killed (status -9)."""
        assert self.proc is not None
        signalled = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        self.downs.append((signalled, time.time()))
        self.proc = None
        self.stops += 1
        if status != 0:
            self.unclean_stops.append(status)
        return status

    def ctl(self, *args: str) -> Any:
        """`logd-ctl --json ARGS` against this daemon, parsed."""
        done = subprocess.run(
            [sys.executable, "-m", "logd.ctl", "--control", str(self.control), "--json", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"logd-ctl {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def settle(self) -> None:
        """Wait until everything the daemons wrote to stderr is in `stderr_path`."""
        for copier in self._copiers:
            copier.join(10)


def _copy(source: IO[bytes], path: Path) -> None:
    with source, open(path, "ab") as target:
        for line in source:
            target.write(line)
            target.flush()
