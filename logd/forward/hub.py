"""Hands each writer batch's committed records to every output's disk buffer.

Runs in the writer thread, after the batch is on disk and before producers get their
acks. Builds the map sent upstream from a routed `Record`, keeps what each output's
`match` wants, tags it, and appends. A failing buffer costs that output its records
(counted and logged), never the local write. No sockets, no trio.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from logd.config import Config
from logd.config.forward import Forward
from logd.config.locations import APP_NAME
from logd.forward.buffer import DiskBuffer
from logd.forward.frames import Entry
from logd.forward.match import matches
from logd.index.states import Peer
from logd.write.records import Record

log = logging.getLogger("logd.forward")

Item = tuple[Record, str, Peer]  # record, the run it was written to, where it came from
REPORT_EVERY_S = 10.0
_OPTIONAL = ("session_id", "call_id", "bot_id", "event_type", "exc", "pid", "thread")


def outbound(record: Record, run_id: str, peer: Peer, host: str) -> dict[str, Any]:
    """The map sent upstream: the record's fields, its run, and where it entered logd.

    `host` and the `peer_*` fields are the daemon's (SO_PEERCRED, not the producer's
    word); a record relayed by another logd keeps the first daemon's values.
    """
    out: dict[str, Any] = dict(record.extra)
    out.update(
        app=record.app, run_id=run_id, level=record.level, logger=record.logger, msg=record.msg
    )
    for key in _OPTIONAL:
        value = getattr(record, key)
        if value is not None:
            out[key] = value
    if record.thread_name is not None:
        out["thread_name"] = record.thread_name
    if record.kv:
        out["kv"] = record.kv
    out.setdefault("host", host)
    if peer.transport == "unix":
        for key, value in (("peer_pid", peer.pid), ("peer_uid", peer.uid), ("peer_gid", peer.gid)):
            if value is not None:
                out.setdefault(key, value)
    elif peer.address and peer.transport == "tcp":
        out.setdefault("peer_address", peer.address)
    return out


def tag_for(template: str, record: Record) -> str:
    """The Forward tag from `[[forward]] tag`, e.g. `logd.{app}.{kind}` -> `logd.cyc.event`."""
    kind = "event" if record.event_type is not None else "record"
    return template.format(app=record.app, kind=kind, logger=record.logger)


def buffer_dir(config: Config, name: str) -> Path:
    """`<state_dir>/forward/<name>/`; state_dir defaults to platformdirs' user_state_dir."""
    state = config.state_dir or Path(platformdirs.user_state_dir(APP_NAME))
    return state / "forward" / name


@dataclass(slots=True, eq=False)
class OutputBuffer:
    """One output's buffer as the writer sees it; `appended` tells the sender to look."""

    settings: Forward
    buffer: DiskBuffer
    appended: bool = False
    last_report: float = float("-inf")


class Hub:
    """Every `[[forward]]` output's buffer, fed by `Engine.process` after each commit.

    Resource handling: owns the buffers; `close()` releases their descriptors.
    """

    def __init__(self, outputs: Sequence[OutputBuffer], hostname: str) -> None:
        self.outputs = list(outputs)
        self.hostname = hostname

    @classmethod
    def open(cls, config: Config, hostname: str) -> Hub:
        """Open (and recover) every output's buffer.

        Raises:
            OSError: a buffer folder cannot be created or read.
        """
        opened: list[OutputBuffer] = []
        try:
            for settings in config.forward:
                buffer = DiskBuffer(
                    buffer_dir(config, settings.name),
                    max_bytes=settings.buffer_max_bytes,
                    fsync=config.fsync != "none",
                )
                opened.append(OutputBuffer(settings, buffer))
                if buffer.records:
                    log.info(
                        "output %s: %d record(s) buffered from before, sending them first",
                        settings.name,
                        buffer.records,
                    )
        except OSError:
            for output in opened:
                output.buffer.close()
            raise
        return cls(opened, hostname)

    def offer(self, items: Sequence[Item]) -> None:
        """Append each output's share of a committed batch (writer thread)."""
        maps: dict[int, dict[str, Any]] = {}
        for output in self.outputs:
            settings = output.settings
            groups: dict[str, list[Entry]] = {}
            for index, (record, run_id, peer) in enumerate(items):
                if not matches(settings.match, record):
                    continue
                mapped = maps.get(index)
                if mapped is None:
                    mapped = maps[index] = outbound(record, run_id, peer, self.hostname)
                tag = tag_for(settings.tag, record) if settings.type == "fluent" else ""
                groups.setdefault(tag, []).append((record.time_ns, mapped))
            if groups:
                self._append(output, groups)

    def _append(self, output: OutputBuffer, groups: dict[str, list[Entry]]) -> None:
        size = output.settings.batch_records
        # One tag per Forward message: records keep their order within each tag.
        batches = [
            (tag, entries[start : start + size])
            for tag, entries in groups.items()
            for start in range(0, len(entries), size)
        ]
        buffer = output.buffer
        dropped_before = sum(buffer.dropped.values())
        try:
            if buffer.append(batches):
                output.appended = True
        except OSError as exc:
            buffer.count_drop("write-failed", sum(len(e) for _, e in batches))
            self._report(output, f"cannot buffer records, dropping them: {exc}")
            return
        lost = sum(buffer.dropped.values()) - dropped_before
        if lost:
            self._report(output, f"buffer full ({buffer.max_bytes} bytes): dropped {lost} oldest")

    def _report(self, output: OutputBuffer, message: str) -> None:
        # A full disk or a long outage fails every batch: say so once per interval.
        now = time.monotonic()
        if now - output.last_report >= REPORT_EVERY_S:
            output.last_report = now
            log.warning("output %s: %s", output.settings.name, message)

    def take_appended(self) -> list[str]:
        """Names of outputs that got records since the last call (event-loop side)."""
        names = [o.settings.name for o in self.outputs if o.appended]
        for output in self.outputs:
            output.appended = False
        return names

    def close(self) -> None:
        for output in self.outputs:
            output.buffer.close()
