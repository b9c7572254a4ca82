"""`logd web` in headless Chromium (Debian's), against a real daemon and a real producer:
every page visited must leave the browser console empty (the CSP reports there).

Set ``LOGD_SCREENSHOTS=docs/screenshots`` to refresh the README's screenshots; they
always go to the test's temporary folder too.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.e2e.test_ctl import ok

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
# An hour of earlier traffic (records dated back), so the volume charts have a shape.
ago = [0.0]
class Back(logging.Filter):
    def filter(self, record):
        record.created -= ago[0]
        return True
traffic = logging.getLogger("shop.traffic")
traffic.addFilter(Back())
levels = [logging.INFO] * 6 + [logging.DEBUG] * 3 + [logging.WARNING, logging.ERROR]
for i in range(240):
    ago[0] = 3600 - i * 15
    traffic.log(levels[(i * 7) % len(levels)], "request %d served", i)
log.info("shop starting")
logging.getLogger("shop.db").debug("connection pool ready (4 connections)")
with logd.session("checkout-42"):
    log.info("cart has 3 items, total 42.90 EUR")
    logd.event("llm:request", "assistant", model="llama3.2", tokens_in=512)
    for n in range(20):
        logd.event("llm:response", "assistant", tokens_out=100 + n, latency_ms=900 + 100 * n)
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


class WebProcess:
    """`logd web` as its own process on a free loopback port."""

    def __init__(self, root: Path, control: Path, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "logd", "web", "--listen", "127.0.0.1:0"]
        command += ["--root", str(root), "--control", str(control)]
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, 20)
        assert line.startswith("logd web: serving http://127.0.0.1:"), line
        self.url = line.split()[3]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def web_url(daemon: DaemonProcess, socket_dir: Path) -> Iterator[str]:
    web = WebProcess(daemon.root, socket_dir / "ctl.sock", daemon.env)
    yield web.url
    web.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module (starting it costs a second or two); each
    test has a context of its own, so no cookie or storage crosses from one to the next."""
    sync_playwright = _need_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Browser:
    """One headless Chromium page, in a context of its own, that records every console
    error and page error: the CSP reports refused inline styles and scripts there."""

    def __init__(self, chromium: Any, base: str, shots: Path) -> None:
        self.context = chromium.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.base = base
        self.shots = shots
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{self.page.url}: {msg.text}") if msg.type == "error" else None
            ),
        )
        self.page.on("pageerror", lambda exc: self.errors.append(f"{self.page.url}: {exc}"))
        self.visited: list[str] = []

    def visit(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.loaded()

    def loaded(self) -> Any:
        """Wait for the page and check its console; returns the page."""
        self.page.wait_for_load_state("load")
        self.visited.append(self.page.url)
        assert self.errors == [], self.errors[:5]
        return self.page

    def no_sideways_scroll(self) -> None:
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"{self.page.url} is {width} px wide"

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / name))

    def close(self) -> None:
        assert self.errors == [], self.errors[:5]
        self.context.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.close()  # again after close(): a no-op


def _publish(shots: Path) -> None:
    wanted = os.environ.get("LOGD_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        for picture in shots.iterdir():
            shutil.copy(picture, Path(wanted) / picture.name)


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_browse_filter_and_follow_live(
    chromium: Any, producer: subprocess.Popen[str], web_url: str, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with Browser(chromium, web_url, shots) as b:
        page = b.visit("/")
        assert "times in " in page.locator("header .zone").inner_text()
        apps = page.locator("table tbody tr").all_inner_texts()
        assert len(apps) == 1
        errors_link = page.locator("table a.badge.errors")
        assert errors_link.inner_text() == "1", "one error:runtime event in the index"

        page = b.visit("/runs")
        assert page.locator("a.run-link").count() == 1
        page = b.visit("/runs?app=shop")
        assert page.locator("svg.volume a").count() > 20, "the app's records over an hour"
        b.shot("runs.png")

        page.locator("a.run-link").click()
        page = b.loaded()
        page.wait_for_selector("#log .rec")
        assert page.locator("#log .rec").count() > 25
        bars = page.locator("figure.chart svg.volume a")
        assert bars.count() > 20
        assert page.locator("figure.chart rect.v-error").count() > 0, "errors stacked in red"
        page.locator("#log").evaluate("box => { box.scrollTop = 0 }")
        b.shot("run-log.png")

        # A bar narrows the log to its time step: the oldest holds early traffic only.
        bars.first.click()
        page = b.loaded()
        page.wait_for_url("**since=**")
        since = _query(page.url)["since"][0]
        narrowed = page.locator("#log .rec").all_inner_texts()
        assert narrowed, "the bar's records"
        assert all("request " in text for text in narrowed), narrowed[:3]
        assert not any("payment failed" in text for text in narrowed)
        assert since.endswith("Z")
        page.get_by_role("link", name="Whole log").click()
        page = b.loaded()

        page.select_option("select[name=level]", "ERROR")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**level=ERROR**")
        page = b.loaded()
        errors = page.locator("#log .rec").all_inner_texts()
        assert errors
        assert all(" - ERROR - " in text for text in errors), errors[:3]
        assert "card declined by issuer" in errors[-1], "the traceback is part of the record"

        page.fill("input[name=q]", "DECLINED")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**q=DECLINED**")
        page = b.loaded()
        marks = page.locator("#log mark").all_inner_texts()
        assert marks == ["declined"], "matches are highlighted, case-insensitively"

        page.get_by_role("link", name="checkout-42").first.click()
        page = b.loaded()
        page.wait_for_selector("#log .rec")
        assert "payment failed" in page.locator("#log").inner_text()
        assert page.locator("figure.chart svg.volume").count() == 1
        assert page.locator("dl.facts a.badge.errors").inner_text() == "1"
        page.get_by_role("link", name="Timeline").click()
        page = b.loaded()
        page.wait_for_selector("table.timeline")
        assert "error:runtime" in page.locator("table.timeline").inner_text()
        b.shot("session-timeline.png")

        page = b.visit("/sessions")
        rows = {
            r.locator("a.session-link").inner_text(): r.locator("td").nth(6).inner_text()
            for r in page.locator("table tbody tr").all()
        }
        assert rows == {"checkout-42": "1", "browse-7": "0"}, "error counts per session"

        page = b.visit("/events")
        events = page.locator("table.events tbody tr")
        assert events.count() >= 24, "the newest events, no filter needed"
        headers = page.locator("table.events thead th").all_inner_texts()
        assert [h.lower() for h in headers[-3:]] == ["app", "session", "call"]
        assert page.locator("svg.volume a").count() >= 1
        spread = page.locator("table.spreads tbody tr", has_text="latency_ms")
        assert spread.locator("td").nth(3).inner_text() == "1,800", "p50 of 900..2800"
        assert spread.locator("td").nth(4).inner_text() == "2,700", "p95"
        b.shot("events.png")
        page.fill("input[name=type]", "llm:*")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**type=llm*")
        page = b.loaded()
        assert page.locator("table.events tbody tr").count() == 21
        call_cells = page.locator("table.events tbody td:last-child a")
        assert call_cells.count() == 0, "the llm events belong to no call"
        page = b.visit("/events")
        page.select_option("select[name=level]", "ERROR")
        page.fill("input[name=type]", "")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**level=ERROR**")
        page = b.loaded()
        records = page.locator("table.events tbody .badge.errors", has_text="(ERROR)")
        assert records.count() == 22, "the traffic's plain ERROR records are listed too"
        assert page.locator("table.events .badge", has_text="error:runtime").count() == 1

        page = b.visit("/calls")
        page.locator("a.call-link").first.click()
        page = b.loaded()
        assert page.locator("figure.chart svg.volume").count() == 1

        page = b.visit("/sessions")
        page.get_by_role("link", name="checkout-42").first.click()
        page = b.loaded()
        page.get_by_role("link", name="Live tail").click()
        page = b.loaded()
        page.wait_for_selector("#live-state.ok")
        assert producer.stdin is not None
        started = time.monotonic()
        producer.stdin.write("order 1234 shipped twice\n")
        producer.stdin.flush()
        record = page.locator("#tail .rec", has_text="live: order 1234 shipped twice")
        record.wait_for(timeout=2000)
        assert time.monotonic() - started < 2.0
        b.shot("live-tail.png")
        page = b.visit("/status")
        first = page.locator("table.daemon-timeline tbody tr").first.inner_text()
        assert "logd:start" in page.locator("table.daemon-timeline").inner_text()
        assert "logd:stop" not in first, "newest first: the daemon is running"
        b.shot("status.png")
        b.close()
    _publish(shots)


RESTARTED = r"""
import logging, sys
import logd_client as logd

logd.install(app="steady")
log = logging.getLogger("steady")
print("ready", flush=True)
for line in sys.stdin:
    if line.startswith("burst "):
        for i in range(int(line.split()[1])):
            log.info("burst %d", i)  # no flush: these are in flight when logd stops
    else:
        log.info("line %s", line.strip())
    print("logged", flush=True)
"""
BURST = 500


def test_live_tail_resumes_after_a_daemon_restart(
    chromium: Any, log_root: Path, socket_dir: Path, tmp_path: Path
) -> None:
    """The live page stays open while logd restarts: it says so, reconnects, and shows
    the record written while logd was down and the ones after, each exactly once."""
    daemon = start_daemon(log_root, socket_dir)
    second: DaemonProcess | None = None
    web = WebProcess(log_root, socket_dir / "ctl.sock", daemon.env)
    producer = subprocess.Popen(
        [sys.executable, "-c", RESTARTED],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert producer.stdin is not None
    assert producer.stdout is not None

    def say(text: str) -> None:
        assert producer.stdin is not None
        assert producer.stdout is not None
        producer.stdin.write(text + "\n")
        producer.stdin.flush()
        assert _read_line(producer.stdout, 20) == "logged\n"

    try:
        assert _read_line(producer.stdout, 20) == "ready\n"
        say("one")
        with Browser(chromium, web.url, tmp_path) as b:
            page = b.visit("/live?app=steady")
            page.wait_for_selector("#live-state.ok")
            page.locator("#tail .rec", has_text="line one").wait_for()
            say("two")
            page.locator("#tail .rec", has_text="line two").wait_for()
            say(f"burst {BURST}")
            assert daemon.stop() == 0
            page.wait_for_selector("#live-state.wait")
            say("while away")  # spooled by the client until logd is back
            second = start_daemon(log_root, socket_dir)
            page.locator("#tail .rec", has_text="line while away").wait_for(timeout=20_000)
            page.wait_for_selector("#live-state.ok")
            say("three")
            page.locator("#tail .rec", has_text="line three").wait_for()
            texts = page.locator("#tail .rec:not(.notice)").all_inner_texts()
            shown = [re.sub(r".* - ", "", t) for t in texts]
            lines = [t for t in shown if t.startswith("line ")]
            assert lines == ["line one", "line two", "line while away", "line three"], lines
            burst = [t for t in shown if t.startswith("burst ")]
            assert len(burst) == len(set(burst)), "nothing twice"
            missing = {f"burst {i}" for i in range(BURST)} - set(burst)
            assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:3]}"
            assert shown.index("line two") < shown.index("burst 0")
            assert shown.index(f"burst {BURST - 1}") < shown.index("line three")
            notices = page.locator("#tail .rec.notice").all_inner_texts()
            assert len(notices) == 2, notices
            assert "reconnecting" in notices[0]
            assert "written meanwhile" in notices[1]
            b.close()
    finally:
        producer.stdin.close()
        producer.wait(timeout=30)
        producer.stdout.close()
        web.stop()
        for proc in (daemon, second):
            if proc is not None and proc.proc.poll() is None:
                proc.stop()


LONG = "x" * 290 + "-long-id"
ROTATED = r"""
import logging, sys
import logd_client as logd

long_id = sys.argv[1]
logd.install(app="rot")
log = logging.getLogger("rot")
with logd.session(long_id):
    log.info("needle in the oldest part")
with logd.call(long_id, bot_id="bot-" + long_id):
    log.info("in a call with a long id")
    logd.event("llm:response", "agent", "answered", latency_ms=10)
assert logd.flush(20)
print("ok", flush=True)
for line in sys.stdin:
    for i in range(50):
        log.info("filler %s %d", line.strip(), i)
    assert logd.flush(20)
    print("ok", flush=True)
"""


def test_rotated_run_is_one_log_and_long_ids_stay_in_their_columns(
    chromium: Any, daemon: DaemonProcess, web_url: str, tmp_path: Path
) -> None:
    """After `logd-ctl rotate` the run page opens the run's main log across its parts,
    and search reaches back into the compressed one; 300-character ids do not push the
    tables wider than the window."""
    producer = subprocess.Popen(
        [sys.executable, "-c", ROTATED, LONG],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert producer.stdin is not None
    assert producer.stdout is not None
    try:
        assert _read_line(producer.stdout, 20) == "ok\n"
        for batch in ("a", "b"):
            assert ok(daemon, "rotate").startswith("Rotated ")
            producer.stdin.write(batch + "\n")
            producer.stdin.flush()
            assert _read_line(producer.stdout, 20) == "ok\n"
        assert ok(daemon, "rotate").startswith("Rotated ")
        (folder,) = (daemon.root / "rot" / "runs").glob("2*")
        parts = {"main.log.1.gz", "main.log.2.gz", "main.log.3.gz"}
        wait_for(lambda: parts <= set(os.listdir(folder)))
        assert not (folder / "main.log").exists(), "made again by the next record"
        with Browser(chromium, web_url, tmp_path) as b:
            page = b.visit("/runs?app=rot")
            page.locator("a.run-link").click()
            page = b.loaded()
            pager = page.locator(".pager span").first.inner_text()
            assert "across 3 parts" in pager, pager
            texts = page.locator("#log .rec").all_inner_texts()
            assert any("filler b 49" in t for t in texts)
            page.fill("input[name=q]", "needle")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url("**q=needle**")
            page = b.loaded()
            assert page.locator("#log mark").all_inner_texts() == ["needle"]
            for path in ("/", "/runs", "/sessions", "/calls", "/events", f"/calls?call={LONG}"):
                b.visit(path)
                b.no_sideways_scroll()
            page = b.visit("/events")
            page.locator("table.events tbody td:last-child a").first.click()
            page = b.loaded()
            assert page.locator("a.call-link").count() == 1, "the call of that id"
            page.locator("a.call-link").click()
            b.loaded()
            b.no_sideways_scroll()
            b.close()
    finally:
        producer.stdin.close()
        producer.wait(timeout=20)
        producer.stdout.close()
