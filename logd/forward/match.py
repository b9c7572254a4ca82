"""Which records an output sends (`[[forward]]` match keys). Pure: no I/O, no clock."""

from __future__ import annotations

from logd.config.forward import ForwardMatch
from logd.write.records import Record


def matches(match: ForwardMatch, record: Record) -> bool:
    """Whether `record` goes to an output with this `match`; all conditions must hold.

    `events_only` keeps records with an `event_type`; a record that only becomes an
    `error:runtime` event in the event log is not one (upstream derives that itself).
    """
    if match.events_only and record.event_type is None:
        return False
    if record.levelno < match.min_levelno:
        return False
    return not match.apps or record.app in match.apps
