"""The shortcuts of the hot path give exactly what the general code gives.

`normalize()` takes a shortcut for the records logd_client sends, and the engine writes
plain records through `Templates`; both must agree with the general path on every input,
including the awkward ones.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire

from logd.config import Layout
from logd.index.eventline import iso_utc_ms
from logd.index.states import Peer
from logd.write.engine import Engine
from logd.write.jobs import ConnClosed, Ingest
from logd.write.records import Normalizer, Record, Unroutable, _general, normalize
from logd.write.routing import clock_text, day_text, route
from logd.write.templates import MAX_CONTEXTS, Templates
from tests.helpers import make_config

T0 = 1_762_353_052_123_456_789
RUN = "20251105_143052_a1b2c3d4"
LAYOUTS = [
    pytest.param(Layout(utc=True, component_files=True), id="utc"),
    pytest.param(Layout(utc=False, component_files=True), id="local"),
    pytest.param(Layout(utc=True, component_files=False), id="no-components"),
]
CLIENT = {
    "msg": "processing request 7",
    "level": "INFO",
    "logger": "cycling_ai.agent",
    "app": "cyc",
    "run_id": RUN,
    "pid": 4242,
    "thread": 140204331655232,
    "thread_name": "MainThread",
}
MESSAGES = [
    "",
    "plain",
    'quote " and backslash \\ and tab \t',
    "two\nlines",
    "unicode é ✓ 🚀",
    "surrogate \udcff from bad utf-8",
    "nul \x00 inside",
    '\x00logd probe "msg"\x00',  # the probe's own text
    "2009-02-13 23:31:30,456 looks like the probe's time",
]
CONTEXTS = [
    pytest.param({}, id="client"),
    pytest.param({"session_id": "20251105_143052"}, id="session"),
    pytest.param({"logger": "main"}, id="logger-main"),
    pytest.param({"logger": "../../etc/passwd", "session_id": "a/b"}, id="hostile-ids"),
    pytest.param({"session_id": "2009-02-13 23:31:30,456"}, id="session-like-probe-time"),
    pytest.param({"session_id": "2009-02-13T23:31:30.456Z"}, id="session-like-probe-iso"),
    pytest.param({"level": "WARN"}, id="warn-alias"),
    pytest.param({"level": "NOTICE", "app": None}, id="no-app"),
    pytest.param({"call_id": "c1", "bot_id": "b1"}, id="call"),
    pytest.param({"call_id": "c1", "bot_id": "b1", "session_id": "s1"}, id="call-in-session"),
    pytest.param({"call_id": "c1", "thread": None}, id="call-no-bot-no-thread"),
    pytest.param({"call_id": "2009-02-13", "bot_id": "b/../x"}, id="call-hostile-ids"),
]


def raw_of(context: dict[str, Any], **fields: Any) -> dict[str, Any]:
    raw = {**CLIENT, **context, **fields}
    return {k: v for k, v in raw.items() if v is not None}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_templates_write_what_route_writes(layout: Layout, context: dict[str, Any]) -> None:
    templates = Templates(layout)
    # A session id holding the probe's time text hides the time: no template, see below.
    probe_ns = 1_234_567_890_456_000_000
    hides_probe = context.get("session_id") in (
        clock_text(probe_ns, layout.utc),
        iso_utc_ms(probe_ns),
    )
    for step, msg in enumerate(MESSAGES):
        # Times across a second and a day boundary, each message twice: the second use
        # of a context comes from the cache.
        for time_ns in (T0 + step * 333_000_000, T0 + 86_400 * 10**9 + step):
            record = normalize("cyc.web", time_ns, raw_of(context, msg=msg))
            expected = None if hides_probe else route(record, RUN, layout).writes
            assert templates.writes(record, RUN) == expected
            assert templates.writes(record, RUN) == expected


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_a_run_of_records_renders_as_route_writes_each(
    layout: Layout, context: dict[str, Any]
) -> None:
    templates = Templates(layout)
    # Times within a millisecond, across a second and across a day, with every message.
    times = [T0 + step * 333_000_000 for step in range(len(MESSAGES))]
    times += [T0 + 86_400 * 10**9 + step for step in range(len(MESSAGES))]
    msgs = MESSAGES * 2
    records = [
        normalize("cyc.web", t, raw_of(context, msg=m)) for t, m in zip(times, msgs, strict=True)
    ]
    template = templates.find(records[0], RUN)
    if template is None:  # a context hiding the probe: the engine routes record by record
        assert context.get("session_id", "").startswith("2009-02-13")
        return
    expected: dict[tuple[Any, str], list[str]] = {where: [] for where in template.paths}
    # A call keeps the date folder of its first record, past midnight too.
    call_day = day_text(times[0], layout.utc) if "call_id" in context else None
    for record in records:
        for write in route(record, RUN, layout, call_day=call_day).writes:
            expected[(write.kind, write.path)].append(write.line)
    targets: list[list[str]] = [["already there"] for _ in template.paths]
    templates.render_many(template, targets, times[:5], msgs[:5])
    templates.render_many(template, targets, times[5:], msgs[5:])
    assert {
        where: lines[1:] for where, lines in zip(template.paths, targets, strict=True)
    } == expected


@pytest.mark.parametrize("layout", LAYOUTS)
def test_records_of_contexts_taking_turns_render_as_route_writes_each(layout: Layout) -> None:
    # Sessions, loggers and levels taking turns record by record, across a second.
    templates = Templates(layout)
    contexts: list[dict[str, Any]] = [
        {"session_id": "s1"},
        {"session_id": "s2", "logger": "main"},
        {},
        {"level": "WARNING", "session_id": "s1"},
        {"call_id": "c1", "bot_id": "b1"},
        {"call_id": "c2", "bot_id": "b1", "thread": 7},
    ]
    records = [
        normalize("cyc", T0 + i * 97_000_000, raw_of(contexts[i % 6], msg=MESSAGES[i % 9]))
        for i in range(36)
    ]

    class Placed:
        def __init__(self, record: Record) -> None:
            found = templates.find(record, RUN)
            assert found is not None
            self.template = found
            self.targets = [files.setdefault(where, []) for where in found.paths]

    files: dict[tuple[Any, str], list[str]] = {}
    placed = [Placed(record) for record in records]
    templates.render_each(
        placed[:20], [r.time_ns for r in records[:20]], [r.msg for r in records[:20]]
    )
    templates.render_each(
        placed[20:], [r.time_ns for r in records[20:]], [r.msg for r in records[20:]]
    )
    expected: dict[tuple[Any, str], list[str]] = {}
    for record in records:
        for write in route(record, RUN, layout).writes:
            expected.setdefault((write.kind, write.path), []).append(write.line)
    assert files == expected


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "contexts",
    [
        # Sessions of one logger taking turns: rendered file by file.
        [{"session_id": f"s{n}"} for n in range(5)],
        # Two producers' contexts of the same session, in two runs.
        [{"session_id": "s1"}, {"session_id": "s1"}, {"session_id": "s2", "run_id": "r2"}],
        # Two lines each, but the session's file is the second of a run's record and the
        # first of a call's: rendered record by record.
        [{"session_id": "s1"}, {"session_id": "s1", "call_id": "c1", "bot_id": "b1"}],
        # A session's file is the second line for one logger and the third for another
        # (its component file comes between).
        [{"session_id": "s1", "logger": "main"}, {"session_id": "s1", "logger": "cyc.db"}],
    ],
    ids=["sessions", "shared-session", "session-file-moves", "component-between"],
)
def test_sessions_taking_turns_keep_each_files_lines_in_arrival_order(
    layout: Layout, contexts: list[dict[str, str]]
) -> None:
    templates = Templates(layout)
    records = [
        normalize(
            "cyc",
            T0 + i * 61_000_000,
            raw_of(contexts[i % len(contexts)], msg=f"{i} {MESSAGES[i % 9]}"),
        )
        for i in range(40)
    ]
    files: dict[tuple[Any, str], list[str]] = {}

    class Placed:
        def __init__(self, record: Record) -> None:
            assert record.run_id is not None
            found = templates.find(record, record.run_id)
            assert found is not None
            self.template = found
            self.targets = [files.setdefault(where, []) for where in found.paths]

    by_context: dict[int, Placed] = {}
    placed = [
        by_context.setdefault(i % len(contexts), Placed(record)) for i, record in enumerate(records)
    ]
    templates.render_each(placed, [r.time_ns for r in records], [r.msg for r in records])
    expected: dict[tuple[Any, str], list[str]] = {}
    for record in records:
        assert record.run_id is not None
        for write in route(record, record.run_id, layout).writes:
            expected.setdefault((write.kind, write.path), []).append(write.line)
    assert files == expected


def test_templates_cover_the_common_contexts() -> None:
    templates = Templates(Layout(utc=True))
    for context in ({}, {"session_id": "s1"}, {"logger": "main"}, {"call_id": "c1"}):
        record = normalize("cyc", T0, raw_of(context))
        assert templates.writes(record, RUN) == route(record, RUN, templates.layout).writes


def test_a_context_that_hides_the_probe_is_routed_record_by_record() -> None:
    templates = Templates(Layout(utc=True))
    record = normalize("cyc", T0, raw_of({"session_id": "2009-02-13T23:31:30.456Z"}))
    assert templates.writes(record, RUN) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"call_id": "c1", "level": "ERROR"},
        {"event_type": "llm:request", "kv": {"model": "m"}},
        {"exc": "Traceback (most recent call last):\nValueError: x", "level": "ERROR"},
        {"exc": "Traceback (most recent call last):\nValueError: x", "level": "INFO"},
        {"user": "u7"},
        {"kv": {"a": 1}},
        {"bot_id": "b1"},
        {"call_id": "c1", "event_type": "call:end"},
    ],
)
def test_records_that_are_not_plain_go_through_route(fields: dict[str, Any]) -> None:
    record = normalize("cyc", T0, raw_of({}, **fields))
    assert Templates(Layout()).writes(record, RUN) is None


def test_template_cache_is_bounded() -> None:
    templates = Templates(Layout(utc=True))
    for n in range(MAX_CONTEXTS + 10):
        record = normalize("cyc", T0, raw_of({"session_id": f"s{n}"}))
        assert templates.writes(record, RUN) is not None
    assert len(templates._cache) <= MAX_CONTEXTS


RAWS = [
    pytest.param(CLIENT, id="client"),
    pytest.param(raw_of({"session_id": "s", "call_id": "c", "bot_id": "b"}), id="ids"),
    pytest.param(raw_of({"level": "WARN"}), id="warn"),
    pytest.param(raw_of({"level": "info"}), id="lower-case-level"),
    pytest.param(raw_of({"level": 30}), id="int-level"),
    pytest.param(raw_of({"level": None}), id="nil-level"),
    pytest.param(raw_of({"level": True}), id="bool-level"),
    pytest.param(raw_of({"logger": ""}), id="empty-logger"),
    pytest.param(raw_of({"logger": None}), id="no-logger"),
    pytest.param(raw_of({"logger": b"bytes"}), id="bytes-logger"),
    pytest.param(raw_of({"app": ""}), id="empty-app"),
    pytest.param(raw_of({"app": None}), id="no-app"),
    pytest.param(raw_of({"msg": None}), id="nil-msg"),
    pytest.param(raw_of({"msg": 12}), id="int-msg"),
    pytest.param({"level": "INFO"}, id="no-msg"),
    pytest.param(raw_of({"pid": True}), id="bool-pid"),
    pytest.param(raw_of({"pid": "77"}), id="str-pid"),
    pytest.param(raw_of({"thread": 1.5}), id="float-thread"),
    pytest.param(raw_of({"thread_name": 3}), id="int-thread-name"),
    pytest.param(raw_of({"session_id": ""}), id="empty-session"),
    pytest.param(raw_of({"session_id": 42}), id="int-session"),
    pytest.param(raw_of({"run_id": "r" * 5000}), id="long-run-id"),
    pytest.param(raw_of({"call_id": ["x"]}), id="list-call-id"),
]


@pytest.mark.parametrize("raw", RAWS)
@pytest.mark.parametrize("time_ns", [T0, 0, -1, 10**22])
def test_normalize_shortcut_agrees_with_the_general_path(raw: dict[str, Any], time_ns: int) -> None:
    def outcome(f: Any) -> Record | str:
        try:
            result: Record = f("cyc.web", time_ns, raw)
        except Unroutable as exc:
            return f"unroutable: {exc}"
        return result

    assert outcome(normalize) == outcome(_general)


# Each follows CLIENT (a plain record); True when it must be recognised as a repeat.
FOLLOWERS = [
    pytest.param({"msg": "another message"}, True, id="new-message"),
    pytest.param({"msg": ""}, True, id="empty-message"),
    pytest.param({}, True, id="same-message"),
    pytest.param({"msg": 7}, False, id="int-message"),
    pytest.param({"msg": None}, False, id="nil-message"),
    pytest.param({"pid": True}, False, id="bool-pid-equal-to-1"),
    pytest.param({"pid": 4242.0}, False, id="float-pid-equal"),
    pytest.param({"thread": 140204331655232.0}, False, id="float-thread-equal"),
    pytest.param({"level": "WARNING"}, False, id="other-level"),
    pytest.param({"session_id": "s1"}, False, id="new-key"),
    pytest.param({"run_id": None}, False, id="key-gone"),
    pytest.param({"extra": "x"}, False, id="extra-field"),
    pytest.param({"thread_name": b"MainThread"}, False, id="bytes-thread-name"),
]


@pytest.mark.parametrize(("change", "repeat"), FOLLOWERS)
@pytest.mark.parametrize("time_ns", [T0 + 1, -1, 10**22])
def test_normalizer_repeats_only_what_normalize_would_give(
    change: dict[str, Any], repeat: bool, time_ns: int
) -> None:
    normalizer = Normalizer("cyc.web")
    assert not normalizer.repeats(T0, dict(CLIENT))  # nothing before it
    assert normalizer(T0, dict(CLIENT)) == normalize("cyc.web", T0, CLIENT)
    last = normalizer.last
    assert last is not None
    follower = raw_of({}, **change)
    kept = dict(follower)
    assert normalizer.repeats(time_ns, follower) == (repeat and time_ns == T0 + 1)
    assert follower == kept  # the map is left as it came
    if normalizer.repeats(time_ns, follower):
        assert last.again(time_ns, follower["msg"]) == normalize("cyc.web", time_ns, follower)


def test_normalizer_starts_over_after_a_record_that_is_not_plain() -> None:
    normalizer = Normalizer("cyc")
    normalizer(T0, dict(CLIENT))
    assert normalizer.repeats(T0, dict(CLIENT))
    normalizer(T0, raw_of({}, kv={"a": 1}))
    assert normalizer.last is None
    assert not normalizer.repeats(T0, dict(CLIENT))  # not a repeat of the kv record
    normalizer(T0, dict(CLIENT))
    assert normalizer.repeats(T0, dict(CLIENT))
    with pytest.raises(Unroutable):
        normalizer(T0, raw_of({}, pid="x"))
    assert not normalizer.repeats(T0, dict(CLIENT))


def _stream() -> list[tuple[int, dict[str, Any]]]:
    """Records as a busy producer sends them: runs of repeats, sessions, a call, an event."""
    entries = []
    for i in range(60):
        context: dict[str, Any] = {}
        if 10 <= i < 30:
            context["session_id"] = "s1" if i < 25 else "s2"
        if i in (40, 41):
            context["logger"] = "other"
        if i == 45:
            context["call_id"] = "c1"
        if i == 50:
            context["event_type"] = "llm:request"
        if i == 55:
            context["pid"] = True  # unroutable: its neighbours must not be taken for repeats
        entries.append((T0 + i * 7_000_000, raw_of(context, msg=f"m{i}")))
    return entries


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(errors="replace")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".log", ".jsonl") and "logd.log" not in p.name
    }


# How a stream is fed to the engine: one message (repeats recognised within it), one
# batch per record (contexts carried from batch to batch), or one batch per record with
# the contexts forgotten in between (no record can be taken for a repeat: the reference).
SPLITS = ("one-message", "batch-per-record", "no-contexts")


def _feed(engine: Engine, entries: list[tuple[int, dict[str, Any]]], split: str) -> None:
    peer = Peer(conn_id=1, transport="unix", pid=4242, uid=0, gid=0)
    groups = [entries] if split == "one-message" else [[e] for e in entries]
    for n, group in enumerate(groups):
        engine.process([Ingest(peer, [wire.Entries("cyc", group, {"chunk": f"x:{n}"}, [])])])
        if split == "no-contexts":
            engine.gather.forget_contexts()


def test_engine_writes_the_same_with_and_without_repeats(tmp_path: Path) -> None:
    results = []
    for split in SPLITS:
        root = tmp_path / split
        engine = Engine(make_config(root, tmp_path), clock_ns=lambda: T0)
        _feed(engine, _stream(), split)
        sessions = {key: s.records for key, s in engine.registry.sessions.items()}
        runs = {key: (r.records, dict(r.counts)) for key, r in engine.registry.runs.items()}
        engine.close()
        results.append((_files(root), sessions, runs))
    assert results[0] == results[2]
    assert results[1] == results[2]
    files, sessions, runs = results[0]
    assert sessions == {("cyc", "s1"): 15, ("cyc", "s2"): 5}
    assert runs == {("cyc", RUN): (59, {"INFO": 59})}
    assert sum(text.count("\n") for path, text in files.items() if path.endswith("main.log")) == 58


def test_the_cached_time_and_quoted_message_equal_the_slow_forms() -> None:
    # Messages and times drawn from the awkward cases: quotes, backslashes, control and
    # non-ASCII characters, lone surrogates; second boundaries and the epoch.
    import json
    import random

    from logd.write.templates import _dumps

    rng = random.Random(18)
    alphabet = ["a", '"', "\\", "\x00", "\x1f", "\x7f", "é", "\u2028", "\ud800", " ", "\n"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 8))) for _ in range(5000)]
    wrong = [t for t in texts if _dumps(t) != json.dumps(t, ensure_ascii=False)]
    assert not wrong, f"{len(wrong)} differ, e.g. {wrong[:3]!r}"
    templates = Templates(Layout())
    times = [0, 999_999_999, 1_000_000_000, 1_234_567_890_999_999_999]
    times += [
        rng.randint(0, 4_000_000_000) * 10**9 + rng.randint(0, 10**9 - 1) for _ in range(5000)
    ]
    wrong_times = [t for t in times if templates._iso_of(t) != iso_utc_ms(t)]
    assert not wrong_times, f"{len(wrong_times)} differ, e.g. {wrong_times[:3]}"
    # The per-millisecond caches of a message's times: filled, past their bound, then hit.
    clock = partial(clock_text, utc=templates.layout.utc)
    for _ in range(2):
        isos = templates._texts(times, templates._iso_ms, templates._iso_of)
        assert isos == [iso_utc_ms(t) for t in times]
        clocks = templates._texts(times, templates._clock_ms, templates._clock_of)
        assert clocks == [clock(t) for t in times]
    assert 0 < len(templates._iso_ms) <= 4096


def test_interleaved_sessions_keep_the_same_registry_rows_in_one_message(tmp_path: Path) -> None:
    # Sessions taking turns record by record, one ended mid-message and used again after:
    # counted once per message, the rows must equal those of one record per message.
    # (Whole milliseconds: a session taken back from the index has its times at ms.)
    base = T0 - T0 % 1_000_000
    entries = []
    for i in range(40):
        session = f"s{i % 3}"
        fields: dict[str, Any] = {"session_id": session, "msg": f"m{i}"}
        if i in (19, 38):  # s1 ends and comes back; s2's last record ends it
            fields.update(event_type="session:end", msg="")
        entries.append((base + (40 - i) * 3_000_000 * (i % 2 or -1), raw_of({}, **fields)))
    results = []
    for split in SPLITS:
        root = tmp_path / split
        engine = Engine(make_config(root, tmp_path), clock_ns=lambda: T0)
        _feed(engine, entries, split)
        rows: dict[str, tuple[int, int, int, str | None, list[str]]] = {}
        for name in ("s0", "s1", "s2"):  # as stored: ended sessions leave the registry
            s = engine.books.lookup_session("cyc", name, T0)
            assert s is not None
            rows[name] = (s.records, s.first_ns, s.last_ns, s.end_reason, list(s.runs))
        for key, r in engine.registry.runs.items():
            rows[key[1]] = (r.records, r.start_ns, r.last_ns, str(sorted(r.counts.items())), [])
        engine.close()
        results.append((_files(root), rows))
    for result in results[:2]:
        assert result[1] == results[2][1]
        assert result[0] == results[2][0]
    counts = {key: row[0] for key, row in results[0][1].items()}
    assert counts == {"s0": 14, "s1": 13, "s2": 13, RUN: 40}
    assert [row[3] for row in results[0][1].values()][:3] == [None, None, "ended"]


def _interleaved(first: int, count: int, sessions: int = 3) -> list[tuple[int, dict[str, Any]]]:
    """Sessions taking turns, as a server with many conversations sends them."""
    return [
        (T0 + i * 1_000_000, raw_of({"session_id": f"s{i % sessions}"}, msg=f"m{i}"))
        for i in range(first, first + count)
    ]


def test_contexts_from_an_earlier_batch_follow_a_new_layout(tmp_path: Path) -> None:
    # Contexts outlive their batch; a reload that changes the layout (here: no more
    # per-logger files) must not leave records written with the old one's lines.
    config = make_config(tmp_path / "root", tmp_path)
    assert config.layout.component_files
    engine = Engine(config, clock_ns=lambda: T0)
    peer = Peer(conn_id=1, transport="unix", pid=4242, uid=0, gid=0)
    engine.process([Ingest(peer, [wire.Entries("cyc", _interleaved(0, 9), {}, [])])])
    layout = dataclasses.replace(config.layout, component_files=False)
    engine.reload(dataclasses.replace(config, layout=layout))
    engine.process([Ingest(peer, [wire.Entries("cyc", _interleaved(9, 9), {}, [])])])
    engine.close()
    run = tmp_path / "root" / "cyc" / "runs" / RUN
    main_log = (run / "main.log").read_text().splitlines()
    component = (run / "cycling_ai.agent.log").read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in main_log] == [f"m{i}" for i in range(18)]
    assert [line.rsplit(" ", 1)[1] for line in component] == [f"m{i}" for i in range(9)]


def test_contexts_from_an_earlier_batch_still_reach_live_tail(tmp_path: Path) -> None:
    # Records followed live are routed one by one: a context made before anyone
    # followed must not swallow them.
    engine = Engine(make_config(tmp_path / "root", tmp_path), clock_ns=lambda: T0)
    peer = Peer(conn_id=1, transport="unix", pid=4242, uid=0, gid=0)
    engine.process([Ingest(peer, [wire.Entries("cyc", _interleaved(0, 9), {}, [])])])
    engine.publish = True
    engine.process([Ingest(peer, [wire.Entries("cyc", _interleaved(9, 9), {}, [])])])
    engine.close()
    assert [item["msg"] for item in engine.published] == [f"m{i}" for i in range(9, 18)]


def test_a_closed_connection_takes_its_contexts_along(tmp_path: Path) -> None:
    # A record without a run id belongs to its connection's run: a context of a closed
    # connection must not put the next connection's records in the old run.
    engine = Engine(make_config(tmp_path / "root", tmp_path), clock_ns=lambda: T0)
    first = Peer(conn_id=1, transport="unix", pid=4242, uid=0, gid=0)
    second = Peer(conn_id=2, transport="unix", pid=4343, uid=0, gid=0)
    foreign = [(T0 + i, {"msg": f"m{i}", "logger": "x", "session_id": "s"}) for i in range(6)]
    engine.process([Ingest(first, [wire.Entries("cyc", foreign[:3], {}, [])])])
    engine.process([ConnClosed(first, by_daemon=False)])
    engine.process([Ingest(second, [wire.Entries("cyc", foreign[3:], {}, [])])])
    runs = {run.run_id: run.records for run in engine.registry.runs.values()}
    assert engine.gather.contexts_held == 1  # the second connection's session
    engine.process([ConnClosed(second, by_daemon=False)])
    assert engine.gather.contexts_held == 0
    engine.close()
    assert sorted(runs.values()) == [3, 3], runs


def test_interleaved_calls_keep_the_same_files_and_registry_rows(tmp_path: Path) -> None:
    # Calls taking turns, one of them ending and starting again, an ERROR among them:
    # the files and call rows must equal those of records routed one by one.
    entries = []
    for i in range(48):
        call = f"c{i % 3}"
        fields: dict[str, Any] = {"call_id": call, "bot_id": "b1", "msg": f"m{i}"}
        if i % 3 == 2:
            fields["session_id"] = "s1"
        if i == 20:
            fields.update(event_type="call:end", msg="")
        if i == 31:
            fields["level"] = "ERROR"
        entries.append((T0 + i * 5_000_000, raw_of({}, **fields)))
    results = []
    for split in SPLITS:
        root = tmp_path / split
        engine = Engine(make_config(root, tmp_path), clock_ns=lambda: T0)
        _feed(engine, entries, split)
        calls = {name: engine.store.get_call("cyc", name) for name in ("c0", "c1", "c2")}
        session = engine.books.lookup_session("cyc", "s1", T0)
        assert session is not None
        runs = {key: (r.records, dict(r.counts)) for key, r in engine.registry.runs.items()}
        engine.close()
        results.append((_files(root), calls, session.records, runs))
    assert results[0] == results[2]
    assert results[1] == results[2]
    files, calls, session_records, runs = results[0]
    # c2 ended at its 7th record: its row is the call that began again after that.
    assert {name: (row or {}).get("records") for name, row in calls.items()} == {
        "c0": 16,
        "c1": 16,
        "c2": 9,
    }
    assert (calls["c1"] or {}).get("errors") == 1
    assert session_records == 16
    call_lines = sum(text.count("\n") for path, text in files.items() if "/calls/" in path)
    assert call_lines == 48
