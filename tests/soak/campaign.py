"""A randomized fault campaign: real producers and a real daemon, killed and starved at random.

    python3 -m tests.soak.campaign --seconds 60 [--seed N] [--producers 3] [--no-duplicates]
    python3 -m tests.soak.campaign --minutes 10 --keep /tmp/soak-run
    python3 -m tests.soak.campaign --rescan /tmp/soak-run     # judge a kept run again

Producer processes (`tests.soak.producer`, the real logd_client) log numbered records and
note what `flush()` confirmed; a real `python3 -m logd serve` writes them. At random the
campaign SIGKILLs the daemon or stops it with SIGTERM and starts it again, SIGKILLs
producers (a new process, with a new run, takes the slot) or lets one exit while the
daemon is away (it spools), and fills the disk for a few seconds: a tmpfs of its own
under the daemon's root when run as root, else the daemon's RLIMIT_FSIZE. At the end the
producers stop cleanly, the daemon settles and stops, and `books` compares acks, files,
`index.sqlite3`, `metadata.json` and `logd-ctl --json`.
Exit status 1 when an acknowledged record is missing, a book check failed (or, with
`--no-duplicates`, a record was written twice), 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.soak import books
from tests.soak.daemon import REPO, ROTATE_AT_BYTES, Daemon, campaign_env
from tests.soak.disk import Disk
from tests.soak.report import Summary
from tests.soak.scan import Producer, read_acks

# With --keep: the producers' fates and logd-ctl's answers, so `--rescan` can judge again.
KEPT_BOOKS = "books.json"
# Relative weights of the faults; the campaign picks one every 0.7-3 s.
FAULTS = {
    "kill_daemon": 3,
    "term_daemon": 2,
    "kill_producer": 3,
    "disk_full": 2,
    # SIGKILL the daemon, then let a producer exit while it is away: the producer spools,
    # and the daemon at start (or another producer) delivers the spool.
    "exit_while_down": 1,
}


@dataclass(frozen=True)
class Options:
    """What to run; see `main()` for the command-line flags."""

    seconds: float = 60.0
    seed: int = 1
    producers: int = 3
    rate: float = 600.0
    no_duplicates: bool = False
    keep: Path | None = None
    allow_mount: bool = True
    say: Callable[[str], None] = field(default=lambda text: None)


@dataclass
class _Slot:
    index: int
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    producer: Producer | None = None
    respawn_at: float = 0.0


class Campaign:
    """One campaign in the folder `base` (sockets, spool, acks; the disk is mounted there)."""

    def __init__(self, options: Options, base: Path) -> None:
        self.o = options
        self.base = base
        # The faults draw from their own stream, so the producers' draws (which depend on
        # when processes happen to exit) do not shift the schedule of a given seed.
        self.rng = random.Random(options.seed)
        self.producer_rng = random.Random(options.seed + 1)
        size_mib = 128 + int(options.seconds * options.producers * options.rate * 400 / 2**20)
        self.disk = Disk(base, size_mib=size_mib, allow_mount=options.allow_mount)
        self.env = campaign_env(base)
        self.daemon = Daemon(base, self.disk.root, self.env)
        self.slots = [_Slot(i) for i in range(options.producers)]
        self.producers: list[Producer] = []
        self.stop_file = base / "stop"
        self.episodes = 0
        self.episode_until: float | None = None
        self.daemon_due: float | None = None
        self.exits_unasked = 0
        self.exits_while_down = 0
        self.spools_left = 0
        (base / "acks").mkdir()

    def run(self) -> Summary:
        """Run the faults for `options.seconds`, settle, stop, scan."""
        try:
            self._start_daemon(deadline_s=60)
            end = time.monotonic() + self.o.seconds
            next_fault = time.monotonic() + self.rng.uniform(0.7, 3.0)
            last_room = 0.0
            while (now := time.monotonic()) < end:
                self._step(now)
                if now >= next_fault:
                    self._fault(now)
                    next_fault = now + self.rng.uniform(0.7, 3.0)
                if self.episode_until is None and now - last_room > 2:
                    self.disk.make_room()
                    last_room = now
                time.sleep(0.05)
            return self._scan(self._finish())
        finally:
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
                    slot.proc.wait()
            if self.daemon.alive:
                self.daemon.kill()
            self.disk.close(keep_copy=self.o.keep / "root" if self.o.keep else None)

    # --- the faults ------------------------------------------------------------

    def _step(self, now: float, *, respawn: bool = True) -> None:
        for slot in self.slots:
            if slot.proc is not None and (status := slot.proc.poll()) is not None:
                self._reaped(slot, status)
                slot.respawn_at = now + self.producer_rng.uniform(0.0, 1.0)
            if respawn and slot.proc is None and now >= slot.respawn_at:
                self._spawn(slot)
        if self.episode_until is not None and now >= self.episode_until:
            self.o.say("disk: space is back")
            self.disk.recover()
            self.episode_until = None
        if self.daemon.proc is not None and self.daemon.proc.poll() is not None:
            self.o.say(f"daemon exited by itself with {self.daemon.proc.returncode}")
            self.daemon.downs.append((time.time() - 0.1, time.time()))
            self.daemon.proc = None
            self.exits_unasked += 1
            self.daemon_due = now
        if self.daemon.proc is None and self.daemon_due is not None and now >= self.daemon_due:
            if self._start_daemon_once():
                self.daemon_due = None
            else:
                self.daemon_due = now + 0.5

    def _fault(self, now: float) -> None:
        kinds = [k for k in FAULTS if self._possible(k)]
        if not kinds:
            return
        kind = self.rng.choices(kinds, weights=[FAULTS[k] for k in kinds])[0]
        if kind == "kill_daemon":
            self.o.say("daemon: SIGKILL")
            self.daemon.kill()
            self.daemon_due = now + self.rng.uniform(0.0, 2.0)
        elif kind == "term_daemon":
            status = self.daemon.stop()
            self.o.say(f"daemon: SIGTERM, exit status {status}")
            self.daemon_due = time.monotonic() + self.rng.uniform(0.0, 1.5)
        elif kind == "exit_while_down":
            slot = self.rng.choice([s for s in self.slots if _running(s.proc)])
            assert slot.producer is not None
            self.o.say(f"daemon: SIGKILL, and producer {slot.producer.name} exits meanwhile")
            self.daemon.kill()
            self._quit_file(slot.producer).touch()
            self.daemon_due = now + self.rng.uniform(2.0, 4.0)
            self.exits_while_down += 1
        elif kind == "kill_producer":
            # Not one already told to quit: killed after its app:shutdown went out, its
            # run rightly ends "shutdown", which the books would count against it.
            slot = self.rng.choice([s for s in self.slots if self._killable(s)])
            assert slot.proc is not None
            assert slot.producer is not None
            self.o.say(f"producer {slot.producer.name}: SIGKILL")
            slot.proc.kill()
            slot.producer.killed = True
        else:
            self.episodes += 1
            self.episode_until = now + self.rng.uniform(1.0, 4.0)
            self.o.say(f"disk: full for {self.episode_until - now:.1f} s")
            self.disk.fill()

    def _possible(self, kind: str) -> bool:
        if kind in ("kill_daemon", "term_daemon"):
            return self.daemon.alive
        if kind == "exit_while_down":
            return self.daemon.alive and any(_running(s.proc) for s in self.slots)
        if kind == "kill_producer":
            return any(self._killable(s) for s in self.slots)
        return self.episode_until is None

    def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        producer = Producer(f"p{slot.index}.{slot.generation}")
        command = [sys.executable, "-m", "tests.soak.producer", "--name", producer.name]
        command += ["--acks", str(self._acks(producer)), "--stop", str(self.stop_file)]
        command += ["--quit", str(self._quit_file(producer))]
        command += ["--seed", str(self.producer_rng.randrange(2**31))]
        lifetime = self.producer_rng.uniform(3.0, 20.0)
        command += ["--lifetime", f"{lifetime:.2f}", "--rate", str(self.o.rate)]
        with open(self.base / "producers.stderr", "ab") as stderr:
            slot.proc = subprocess.Popen(command, env=self.env, cwd=REPO, stderr=stderr)
        producer.pid = slot.proc.pid
        slot.producer = producer
        self.producers.append(producer)

    def _reaped(self, slot: _Slot, status: int) -> None:
        assert slot.producer is not None
        slot.producer.exit_status = status
        slot.proc = None

    def _acks(self, producer: Producer) -> Path:
        return self.base / "acks" / f"{producer.name}.acks"

    def _killable(self, slot: _Slot) -> bool:
        return (
            _running(slot.proc)
            and slot.producer is not None
            and not self._quit_file(slot.producer).exists()
        )

    def _quit_file(self, producer: Producer) -> Path:
        return self.base / "acks" / f"{producer.name}.quit"

    def _start_daemon_once(self) -> bool:
        started = self.daemon.start(preexec=self.disk.preexec())
        if started:
            assert self.daemon.proc is not None
            self.disk.daemon_started(self.daemon.proc.pid)
        self.o.say("daemon: started" if started else "daemon: did not start")
        return started

    def _start_daemon(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while not self._start_daemon_once():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon does not start; see {self.daemon.stderr_path}")
            time.sleep(0.5)

    # --- the end -----------------------------------------------------------------

    def _finish(self) -> books.CtlView:
        """Space back, daemon up, producers stopped cleanly, spools delivered, runs ended."""
        if self.episode_until is not None:
            self.disk.recover()
            self.episode_until = None
        if not self.daemon.alive:
            self.daemon.proc = None
            self._start_daemon(deadline_s=60)
        self.stop_file.touch()
        self.o.say("stopping the producers")
        deadline = time.monotonic() + 60
        while any(s.proc is not None for s in self.slots) and time.monotonic() < deadline:
            self._step(time.monotonic(), respawn=False)
            time.sleep(0.05)
        for slot in self.slots:
            if slot.proc is not None and slot.producer is not None:
                self.o.say(f"producer {slot.producer.name} did not stop: SIGKILL")
                slot.proc.kill()
                slot.producer.killed = True
                self._reaped(slot, slot.proc.wait())
        if self._spools():
            # Spools of producers that exited while no daemon could ack them: the daemon
            # delivers those at start, and no later client comes along to do it.
            self.o.say("restarting the daemon to deliver spools left behind")
            self.daemon.stop()
            self._start_daemon(deadline_s=60)
        _wait_until(lambda: not self._spools(), 30)
        self.spools_left = len(self._spools())
        if not _wait_until(lambda: not self.daemon.ctl("runs", "--app", "soak", "--active"), 30):
            self.o.say("runs still active 30 s after the producers stopped")
        ctl_runs = self.daemon.ctl("runs", "--app", "soak")
        ctl_sessions = self.daemon.ctl("sessions", "--app", "soak")
        ctl = books.CtlView(ctl_runs, ctl_sessions, *books.read_registry(self.disk.root))
        self.o.say(f"final stop: exit status {self.daemon.stop()}")
        return ctl

    def _spools(self) -> list[Path]:
        return sorted((self.base / "spool").glob("spool-*.msgpack"))

    def _scan(self, ctl: books.CtlView) -> Summary:
        for producer in self.producers:
            read_acks(producer, self._acks(producer))
        if self.o.keep is not None:
            self.o.keep.mkdir(parents=True, exist_ok=True)
            kept: dict[str, object] = {"producers": [dataclasses.asdict(p) for p in self.producers]}
            kept |= {"ctl": dataclasses.asdict(ctl), "daemon_downs": self.daemon.downs}
            (self.o.keep / KEPT_BOOKS).write_text(json.dumps(kept), encoding="utf-8")
        verdict = books.judge(
            self.disk.root,
            self.producers,
            ctl,
            daemon_downs=self.daemon.downs,
            rotate_at_bytes=ROTATE_AT_BYTES,
        )
        self.daemon.settle()
        stderr = self.daemon.stderr_path.read_text(encoding="utf-8", errors="replace")
        return Summary(
            seconds=self.o.seconds,
            seed=self.o.seed,
            producer_slots=self.o.producers,
            no_duplicates=self.o.no_duplicates,
            disk_mode=self.disk.mode,
            verdict=verdict,
            producer_runs=len(self.producers),
            producer_kills=sum(p.killed for p in self.producers),
            producer_errors=[
                f"{p.name} exited with {p.exit_status}"
                for p in self.producers
                if not p.killed and p.exit_status != 0
            ],
            daemon_starts=self.daemon.starts,
            daemon_kills=self.daemon.kills,
            daemon_stops=self.daemon.stops,
            daemon_exits_unasked=self.exits_unasked,
            exits_while_down=self.exits_while_down,
            failed_starts=self.daemon.start_failures,
            unclean_stops=self.daemon.unclean_stops,
            disk_full_episodes=self.episodes,
            spools_left=self.spools_left,
            daemon_tracebacks=stderr.count("Traceback (most recent call last)"),
            logging_errors=stderr.count("--- Logging error ---"),
        )


def _running(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is not None and proc.poll() is None


def _wait_until(predicate: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def run_campaign(options: Options) -> Summary:
    """Run one campaign in a fresh folder under /tmp (short socket paths), then remove it;
    with `options.keep`, the folder's files and a copy of the log tree go there."""
    base = Path(tempfile.mkdtemp(prefix="logd-soak-", dir="/tmp"))
    try:
        return Campaign(options, base).run()
    finally:
        if options.keep is not None:
            options.keep.mkdir(parents=True, exist_ok=True)
            for name in ("acks", "daemon.stderr", "producers.stderr", "logd.toml"):
                source = base / name
                with contextlib.suppress(FileNotFoundError):
                    if source.is_dir():
                        shutil.copytree(source, options.keep / name, dirs_exist_ok=True)
                    else:
                        shutil.copy2(source, options.keep / name)
        shutil.rmtree(base, ignore_errors=True)


def rescan(kept: Path) -> books.Verdict:
    """Judge a tree kept by `--keep` again (after changing a check, or the tree)."""
    saved = json.loads((kept / KEPT_BOOKS).read_text(encoding="utf-8"))
    producers = [Producer(**fields) for fields in saved["producers"]]
    return books.judge(
        kept / "root",
        producers,
        books.CtlView(**saved["ctl"]),
        daemon_downs=[(down[0], down[1]) for down in saved.get("daemon_downs", [])],
        rotate_at_bytes=ROTATE_AT_BYTES,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, print the table; exit status 1 on any failure."""
    p = argparse.ArgumentParser(
        prog="python3 -m tests.soak.campaign",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="how long to inject faults (default 60)")
    length.add_argument("--minutes", type=float, help="the same, in minutes")
    p.add_argument("--seed", type=int, default=1, help="seeds the schedule of faults (default 1)")
    p.add_argument("--producers", type=int, default=3, help="producer processes at a time (3)")
    p.add_argument("--rate", type=float, default=600.0, help="records/s per producer (600)")
    p.add_argument("--no-duplicates", action="store_true", help="fail on records written twice")
    p.add_argument("--keep", type=Path, metavar="DIR", help="copy the tree, acks and stderr here")
    p.add_argument("--no-mount", action="store_true", help="use RLIMIT_FSIZE even as root")
    p.add_argument("-v", "--verbose", action="store_true", help="say each fault as it happens")
    p.add_argument("--rescan", type=Path, metavar="DIR", help="only judge a --keep folder again")
    args = p.parse_args(argv)
    if args.rescan is not None:
        verdict = rescan(args.rescan)
        print(
            f"acknowledged {verdict.acknowledged:,}, lost {verdict.lost:,}, duplicated "
            f"{sum(verdict.duplicated.values()):,}, book mismatches {verdict.book_mismatches}"
        )
        for check in verdict.failed():
            print(f"  FAIL  {check}: " + "; ".join(books.quote(verdict.mismatches[check])))
        return 1 if verdict.lost or verdict.failed() else 0
    seconds = args.minutes * 60 if args.minutes is not None else (args.seconds or 60.0)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:7.2f}] {text}", file=sys.stderr, flush=True)

    options = Options(
        seconds=seconds,
        seed=args.seed,
        producers=args.producers,
        rate=args.rate,
        no_duplicates=args.no_duplicates,
        keep=args.keep,
        allow_mount=not args.no_mount,
    )
    if args.verbose:
        options = dataclasses.replace(options, say=say)
    summary = run_campaign(options)
    print(summary.table())
    return 1 if summary.failures() else 0


if __name__ == "__main__":
    raise SystemExit(main())
