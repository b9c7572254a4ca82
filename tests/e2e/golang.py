"""The Go Fluent client (`fluent-logger-golang` from Debian) as a real producer, built once.

`tests/e2e/go/sender/main.go` is built offline against Debian's packaged sources
(GOPATH=/usr/share/gocode, no modules) into a folder under `$LOGD_GO_CACHE` (default
/var/tmp/logd-go) named for the source and the compiler, under a lock so parallel runs
build it once. A test is skipped only when `go` is not installed; a missing library or a
failing build fails it (.ci/run installs both).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

GO_CACHE = Path(os.environ.get("LOGD_GO_CACHE", "/var/tmp/logd-go"))
GOPATH = Path("/usr/share/gocode")
LIBRARY = GOPATH / "src/github.com/fluent/fluent-logger-golang/fluent"
SOURCE = Path(__file__).with_name("go") / "sender" / "main.go"
BUILD_TIMEOUT_S = 300


def go_sender() -> Path:
    """The built sender program (see its source for its modes)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is needed to build the Go Fluent client (apt install golang-go)")
    if not LIBRARY.is_dir():
        pytest.fail(
            f"{LIBRARY} is missing: apt install golang-github-fluent-fluent-logger-golang-dev"
        )
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:12]
    folder = GO_CACHE / digest
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "sender"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not program.exists():
            env = {
                **os.environ,
                "GOPATH": str(GOPATH),
                "GO111MODULE": "off",
                "GOFLAGS": "",
                "GOCACHE": str(GO_CACHE / "build-cache"),
                "CGO_ENABLED": "0",
            }
            result = subprocess.run(
                [go, "build", "-o", str(folder / "sender.tmp"), "."],
                cwd=SOURCE.parent,
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
            if result.returncode != 0:
                pytest.fail(f"go build of {SOURCE} failed: {result.stderr[-2000:]}")
            (folder / "sender.tmp").rename(program)
    return program


def sent_count(stdout: str) -> int:
    """What the sender's last line reports: how many records it posted (each one acked
    when it ran with -ack)."""
    reply = json.loads(stdout.strip().splitlines()[-1])
    count = reply["sent"]
    assert isinstance(count, int)
    return count
