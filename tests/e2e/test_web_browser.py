"""`logd web` in headless Chromium (Debian's), against a real daemon and a real producer.

Set ``LOGD_SCREENSHOTS=docs/screenshots`` to refresh the README's screenshots; they
always go to the test's temporary folder too.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.e2e.procs import DaemonProcess

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PRODUCER = r"""
import logging, sys
import logd_client as logd

logd.install(app="shop", level=logging.DEBUG)
log = logging.getLogger("shop.checkout")
log.info("shop starting")
logging.getLogger("shop.db").debug("connection pool ready (4 connections)")
with logd.session("checkout-42"):
    log.info("cart has 3 items, total 42.90 EUR")
    logd.event("llm:request", "assistant", model="llama3.2", tokens_in=512)
    logd.event("llm:response", "assistant", tokens_out=128, latency_ms=2333)
    log.warning("payment provider answered slowly (2.4 s)")
    try:
        raise ConnectionError("card declined by issuer")
    except ConnectionError:
        log.exception("payment failed")
with logd.session("browse-7"):
    for i in range(25):
        log.info("viewed product %d", i)
with logd.call("call-0017", bot_id="support"):
    logging.getLogger("voice").info("call started")
    logging.getLogger("voice").info("caller asked where order 1234 is")
logd.flush(10)
print("ready", flush=True)
for line in sys.stdin:
    with logd.session("checkout-42"):
        log.error("live: %s", line.strip())
    logd.flush(5)
"""


def _need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure in CI, where .ci/run installs both)."""
    in_ci = bool(os.environ.get("CI"))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("playwright is not installed (pip install -e '.[test,web]')")
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists():
        if in_ci:
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium to run the browser tests")
    return sync_playwright


def _read_line(stream: IO[str], seconds: float) -> str:
    ready, _, _ = select.select([stream], [], [], seconds)
    if not ready:
        pytest.fail("no output in time")
    return stream.readline()


@pytest.fixture
def producer(daemon: DaemonProcess) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert _read_line(proc.stdout, 20).strip() == "ready"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=20)
    proc.stdout.close()


@pytest.fixture
def web_url(daemon: DaemonProcess, socket_dir: Path) -> Iterator[str]:
    """`logd web` as its own process on a free loopback port."""
    command = [sys.executable, "-m", "logd", "web", "--listen", "127.0.0.1:0"]
    command += ["--root", str(daemon.root), "--control", str(socket_dir / "ctl.sock")]
    proc = subprocess.Popen(
        command, env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    line = _read_line(proc.stdout, 20)
    assert line.startswith("logd web: serving http://127.0.0.1:"), line
    yield line.split()[3]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    proc.stdout.close()


def test_browse_filter_and_follow_live(
    producer: subprocess.Popen[str], web_url: str, tmp_path: Path
) -> None:
    sync_playwright = _need_browser()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(10_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / name))

        page.goto(web_url + "/runs")
        assert page.locator("a.run-link").count() == 1
        shot("runs.png")

        page.locator("a.run-link").click()
        page.wait_for_selector("#log .rec")
        assert page.locator("#log .rec").count() > 25
        page.locator("#log").evaluate("box => { box.scrollTop = 0 }")
        page.locator("h2", has_text="Log").evaluate("title => title.scrollIntoView()")
        shot("run-log.png")

        page.select_option("select[name=level]", "ERROR")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**level=ERROR**")
        errors = page.locator("#log .rec").all_inner_texts()
        assert errors
        assert all(" - ERROR - " in text for text in errors), errors
        assert "card declined by issuer" in errors[0], "the traceback is part of the record"

        page.get_by_role("link", name="checkout-42").first.click()
        page.wait_for_selector("#log .rec")
        assert "payment failed" in page.locator("#log").inner_text()
        page.get_by_role("link", name="Timeline").click()
        page.wait_for_selector("table.timeline")
        assert "error:runtime" in page.locator("table.timeline").inner_text()
        shot("session-timeline.png")

        page.goto(web_url + "/events")
        page.fill("input[name=since]", "1h")
        page.get_by_role("button", name="Show").click()
        page.wait_for_selector("table.events")
        assert page.locator("table.events tbody tr").count() >= 6
        shot("events.png")
        page.fill("input[name=type]", "llm:*")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**type=llm*")
        assert page.locator("table.events tbody tr").count() == 2

        page.goto(web_url + "/sessions")
        page.get_by_role("link", name="checkout-42").first.click()
        page.get_by_role("link", name="Live tail").click()
        page.wait_for_selector("#live-state.ok")
        assert producer.stdin is not None
        started = time.monotonic()
        producer.stdin.write("order 1234 shipped twice\n")
        producer.stdin.flush()
        record = page.locator("#tail .rec", has_text="live: order 1234 shipped twice")
        record.wait_for(timeout=2000)
        assert time.monotonic() - started < 2.0
        shot("live-tail.png")
        browser.close()

    wanted = os.environ.get("LOGD_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        for picture in shots.iterdir():
            shutil.copy(picture, Path(wanted) / picture.name)
