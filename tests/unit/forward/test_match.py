"""Which records an output sends, what it sends, and under which tag."""

from __future__ import annotations

from typing import Any

import pytest

from logd.config.forward import ForwardMatch
from logd.forward.hub import outbound, tag_for
from logd.forward.match import matches
from logd.index.states import Peer
from logd.write.records import normalize

T = 1_762_353_052_000_000_000


def rec(**fields: Any) -> Any:
    return normalize("cyc.main", T, {"msg": "m", **fields})


EVENT = {"event_type": "llm:request"}


@pytest.mark.parametrize(
    ("match", "fields", "sent"),
    [
        (ForwardMatch(), {}, True),
        (ForwardMatch(), {"level": "TRACE"}, True),
        (ForwardMatch(events_only=True), {}, False),
        (ForwardMatch(events_only=True), EVENT, True),
        # An ERROR with a traceback is an error:runtime event locally, not an event record.
        (ForwardMatch(events_only=True), {"level": "ERROR", "exc": "Traceback"}, False),
        (ForwardMatch(min_levelno=30), {"level": "INFO"}, False),
        (ForwardMatch(min_levelno=30), {"level": "WARNING"}, True),
        (ForwardMatch(min_levelno=30), {"level": 45}, True),
        (ForwardMatch(min_levelno=30), {**EVENT}, False),  # events are INFO unless given
        (ForwardMatch(apps=("cyc",)), {}, True),
        (ForwardMatch(apps=("voice",)), {}, False),
        (ForwardMatch(apps=("voice", "billing")), {"app": "billing"}, True),
        (ForwardMatch(events_only=True, min_levelno=40, apps=("cyc",)), EVENT, False),
        (ForwardMatch(events_only=True, min_levelno=40), {**EVENT, "level": "ERROR"}, True),
    ],
)
def test_match_table(match: ForwardMatch, fields: dict[str, Any], sent: bool) -> None:
    assert matches(match, rec(**fields)) is sent


@pytest.mark.parametrize(
    ("template", "fields", "tag"),
    [
        ("logd.{app}.{kind}", {}, "logd.cyc.record"),
        ("logd.{app}.{kind}", EVENT, "logd.cyc.event"),
        ("apps.{app}.{logger}", {"app": "voice", "logger": "rtp"}, "apps.voice.rtp"),
        ("fixed", {}, "fixed"),
    ],
)
def test_tag_template(template: str, fields: dict[str, Any], tag: str) -> None:
    assert tag_for(template, rec(**fields)) == tag


def test_outbound_keeps_ids_fields_and_peer() -> None:
    record = rec(
        session_id="s1",
        call_id="c1",
        event_type="llm:request",
        kv={"model": "llama"},
        level="WARNING",
        logger="agent",
        pid=99,
        exc="Traceback",
        custom={"a": 1},
    )
    peer = Peer(3, "unix", pid=1234, uid=1000, gid=100)
    assert outbound(record, "20251105_143052_a1b2c3d4", peer, "web1") == {
        "app": "cyc",
        "run_id": "20251105_143052_a1b2c3d4",
        "session_id": "s1",
        "call_id": "c1",
        "event_type": "llm:request",
        "kv": {"model": "llama"},
        "level": "WARNING",
        "logger": "agent",
        "msg": "m",
        "pid": 99,
        "exc": "Traceback",
        "custom": {"a": 1},
        "host": "web1",
        "peer_pid": 1234,
        "peer_uid": 1000,
        "peer_gid": 100,
    }


def test_relayed_record_keeps_first_daemons_fields() -> None:
    """A record that came through another logd keeps that daemon's host and peer."""
    record = rec(host="edge1", peer_pid=7, peer_uid=0)
    out = outbound(record, "r", Peer(1, "tcp", address="10.0.0.2:5555"), "aggregator")
    assert (out["host"], out["peer_pid"], out["peer_uid"]) == ("edge1", 7, 0)
    assert out["peer_address"] == "10.0.0.2:5555"
