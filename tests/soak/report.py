"""The campaign's outcome: what was done to the daemon and producers, and what the scan found."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.soak import books


@dataclass
class Summary:
    """Counts of the faults injected, the verdict, and the failures they add up to."""

    seconds: float
    seed: int
    producer_slots: int
    no_duplicates: bool
    disk_mode: str
    verdict: books.Verdict
    producer_runs: int = 0
    producer_kills: int = 0
    producer_errors: list[str] = field(default_factory=list)
    daemon_starts: int = 0
    daemon_kills: int = 0
    daemon_stops: int = 0
    daemon_exits_unasked: int = 0
    exits_while_down: int = 0
    failed_starts: int = 0
    unclean_stops: list[int] = field(default_factory=list)
    disk_full_episodes: int = 0
    spools_left: int = 0
    daemon_tracebacks: int = 0
    logging_errors: int = 0

    @property
    def duplicated(self) -> int:
        return sum(self.verdict.duplicated.values())

    def failures(self, checks: tuple[str, ...] = books.BOOK_CHECKS) -> list[str]:
        """Why the campaign fails, judging by `checks` among the book checks.

        Lost records always count; duplicates only with `no_duplicates` (the README
        documents an at-least-once window); a producer that failed by itself means the
        campaign did not run as planned.
        """
        reasons = []
        if self.verdict.lost:
            reasons.append(f"{self.verdict.lost} acknowledged records lost")
        reasons += [f"book check failed: {check}" for check in self.verdict.failed(checks)]
        if self.no_duplicates and self.duplicated:
            reasons.append(f"{self.duplicated} records written twice")
        reasons += [f"producer error: {error}" for error in self.producer_errors]
        return reasons

    def table(self) -> str:
        """The report: counts, then every book check with its first mismatches."""
        v = self.verdict
        dup = ", ".join(f"{kind} {n}" for kind, n in sorted(v.duplicated.items()))
        stops = f"{self.daemon_stops}, non-zero exit statuses: {self.unclean_stops or 'none'}"
        stderr = f"{self.daemon_tracebacks} tracebacks, {self.logging_errors} logging errors"
        rows = [
            (
                "producer runs",
                f"{self.producer_runs} ({self.producer_kills} SIGKILLed, "
                f"{self.exits_while_down} exited while the daemon was down)",
            ),
            ("records acknowledged", f"{v.acknowledged:,}"),
            ("lost", f"{v.lost:,}"),
            ("duplicated", f"{self.duplicated:,} ({dup})"),
            ("dropped by clients", f"{v.dropped_by_clients:,}"),
            ("daemon restarts", f"{max(0, self.daemon_starts - 1)}"),
            ("daemon SIGKILLs", f"{self.daemon_kills}"),
            ("daemon SIGTERMs", stops),
            ("daemon failed starts", f"{self.failed_starts}"),
            ("daemon exits unasked", f"{self.daemon_exits_unasked}"),
            ("disk-full episodes", f"{self.disk_full_episodes} ({self.disk_mode})"),
            ("book mismatches", f"{v.book_mismatches}"),
            ("spool files left", f"{self.spools_left}"),
            ("daemon stderr", stderr),
        ]
        lines = [
            f"logd fault campaign: {self.seconds:g} s, seed {self.seed}, "
            f"{self.producer_slots} producer slots"
        ]
        lines += [f"  {name:<22}{value}" for name, value in rows]
        lines += [f"  lost: {example}" for example in v.lost_examples]
        lines.append("book checks:")
        for check in books.BOOK_CHECKS:
            found = v.mismatches[check]
            lines.append(
                f"  {'FAIL' if found else 'ok':<6}{check}" + (f" ({len(found)})" if found else "")
            )
            lines += [f"          {text}" for text in books.quote(found)]
        failures = self.failures()
        lines.append("result: " + ("FAILED: " + "; ".join(failures) if failures else "passed"))
        return "\n".join(lines)
