"""The daemon's own timeline as pure data: facts in, `logd/events.log` lines and index rows out."""

from __future__ import annotations

from logd.index.eventline import parse_event_line
from logd.write.timeline import Timeline, writes_for

S = 1_000_000_000


def test_a_full_disk_is_written_as_one_refused_and_one_recovered_event_once_over() -> None:
    timeline = Timeline()
    timeline.refused(10 * S, "No space left on device", 300, no_room=True)
    timeline.refused(11 * S, "No space left on device", 200, no_room=True)
    assert timeline.take() == []  # still refusing: nothing to say yet
    timeline.committed(14 * S)
    facts = timeline.take()
    writes, rows = writes_for(facts)
    parsed = [parse_event_line(w.line) for w in writes]
    assert [(p.event_type, p.fields["state"]) for p in parsed] == [
        ("system:disk", "refused"),
        ("system:disk", "recovered"),
    ]
    assert parsed[0].fields == {
        "state": "refused",
        "error": "No space left on device",
        "batches": 2,
        "bytes": 500,
    }
    assert parsed[1].fields["duration_ms"] == 4000
    assert {w.path for w in writes} == {"logd/events.log"}
    assert [(r.app, r.source, r.run_id) for r in rows] == [("logd", "logd", None)] * 2
    timeline.committed(15 * S)
    assert timeline.take() == []  # a refusal is reported once


def test_other_io_errors_are_counted_while_they_repeat_and_survive_a_refused_batch() -> None:
    timeline = Timeline()
    for second in (1, 2, 3):
        timeline.refused(second * S, "Input/output error", 10, no_room=False)
    facts = timeline.take()
    assert [(f.event_type, f.text, f.fields, f.ts_ns) for f in facts] == [
        ("error:io", "Input/output error", {"count": 3}, 1 * S)
    ]
    timeline.note(4 * S, "logd:reload", "configuration reloaded", changed=[])
    timeline.restore(facts)  # the batch carrying them was refused too
    timeline.refused(5 * S, "Input/output error", 10, no_room=False)
    again = timeline.take()
    assert sorted((f.event_type, f.fields.get("count")) for f in again) == [
        ("error:io", 4),
        ("logd:reload", None),
    ]


def test_rotations_are_facts_with_file_and_size() -> None:
    timeline = Timeline()
    timeline.rotated(7 * S, [("app/runs/r1/main.log", 1234), ("app/events.log", 99)])
    writes, _ = writes_for(timeline.take())
    assert [parse_event_line(w.line).fields for w in writes] == [
        {"file": "app/runs/r1/main.log", "size": 1234},
        {"file": "app/events.log", "size": 99},
    ]
