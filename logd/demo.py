"""`logd demo`: start a real daemon in a temporary folder, log to it from two processes,
stop it, and show what landed where. A newcomer's first look, and a smoke test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRODUCER = """
import logging, sys
import logd_client as logd

app = sys.argv[1]
logd.install(app=app)
log = logging.getLogger(app.replace("-", "_") + ".agent")
log.info("agent starting")
with logd.session("20251105_143052"):
    log.info("Processing user message")
    logd.event("llm:request", "agent", model="llama3.2", tokens_in=512)
    logd.event("llm:response", "agent", tokens_out=128, latency_ms=2333)
with logd.call("B2B.502.79.1756047989", bot_id="123"):
    logging.getLogger("voice").info("Call started")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("could not divide")
sys.exit(0 if logd.flush(10) else 1)
"""


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def run_demo(*, keep: bool = False) -> int:
    """Run the demo; returns an exit code (0 when every step worked)."""
    folder = Path(tempfile.mkdtemp(prefix="logd-demo-"))
    root, sock = folder / "logs", folder / "logd.sock"
    # A spool folder of its own: the user's spool may hold records of real apps, which a
    # daemon and a client deliver wherever they find them (here: a folder about to go).
    env = dict(os.environ, LOGD_ADDRESS=f"unix:{sock}", LOGD_SPOOL_DIR=str(folder / "spool"))
    env.pop("LOGD_RUN_ID", None)
    print(f"starting logd: root {root}, socket {sock}")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logd",
            "serve",
            "--root",
            str(root),
            "--socket",
            str(sock),
            "--control",
            str(folder / "ctl.sock"),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not _wait_for(sock, 15):
            print("logd did not start:", file=sys.stderr)
            daemon.kill()
            print(daemon.communicate()[1], file=sys.stderr)
            return 1
        print("two producer processes log through logd_client ...")
        producers = [
            subprocess.Popen([sys.executable, "-c", PRODUCER, app], env=env)
            for app in ("demo-agent", "demo-bot")
        ]
        codes = [p.wait(timeout=60) for p in producers]
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=30)
        if any(codes) or daemon.returncode != 0:
            print(f"producers exited {codes}, logd exited {daemon.returncode}", file=sys.stderr)
            print(errors, file=sys.stderr)
            return 1
        _show(root)
        print("\nlogd works. Run `logd serve` to start it for real (see README).")
        return 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if keep:
            print(f"(kept {folder})")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _show(root: Path) -> None:
    print(f"\nfiles under {root}:")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_symlink():
            print(f"  {rel} -> {os.readlink(path)}")
        elif path.is_file():
            print(f"  {rel}  ({path.stat().st_size} bytes)")
    app = root / "demo-agent"
    shown: list[Path | None] = [
        app / "runs" / "current" / "main.log",
        app / "events.log",
        next(iter(sorted((app / "calls").rglob("*.log"))), None),
        next(iter(sorted((app / "sessions").glob("*.jsonl"))), None),
    ]
    for file in shown:
        if file is not None and file.exists():
            print(f"\n--- {file.relative_to(root)}")
            print(file.read_text(encoding="utf-8").rstrip())
