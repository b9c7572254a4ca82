"""Records too large for a message are cut to fit, visibly, rather than lost (no sockets)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire
from logd_client.oversize import fit_record, human_bytes
from logd_client.transport import Transport

from logd.config import Limits
from tests.unit.client.test_outbox import Woken, outbox

BASE = {"level": "INFO", "logger": "big", "app": "a", "run_id": "r", "pid": 1, "thread": 2}


def encoded(record: dict[str, Any]) -> int:
    return len(wire.encode_map(record))


def test_the_client_keeps_within_the_daemons_default_message_limit() -> None:
    default = inspect.signature(Transport).parameters["max_message_bytes"].default
    assert default == Limits().max_message_bytes == wire.DEFAULT_MAX_MESSAGE_BYTES


def test_a_record_that_fits_is_left_alone() -> None:
    record = {**BASE, "msg": "x" * 100}
    assert fit_record(record, 1000) == (record, 0)
    assert fit_record(record, 1000)[0] is record  # type: ignore[index]


def test_the_message_is_cut_first_and_ends_in_a_marker() -> None:
    record: dict[str, Any] = {**BASE, "msg": "HEAD" + "x" * 3_000_000, "exc": "y" * 500_000}
    fitted = fit_record(record, 1 << 20)
    assert fitted is not None
    out, cut = fitted
    assert encoded(out) <= 1 << 20
    assert encoded(out) > (1 << 20) - 100  # no more cut than needed
    assert out["msg"].startswith("HEADxxx")
    assert out["msg"].endswith(f"x… [truncated {human_bytes(cut)}]")
    assert cut == 3_000_004 - len(out["msg"].split("…")[0])
    assert out["exc"] == record["exc"]
    assert {k: out[k] for k in BASE} == BASE
    assert len(record["msg"]) == 3_000_004  # cut in a copy


def test_other_large_fields_go_when_the_message_is_not_enough() -> None:
    record: dict[str, Any] = {
        **BASE,
        "msg": "m" * 10_000,
        "exc": "e" * 600_000,
        "kv": {"prompt": "p" * 900_000, "n": 1},
        "rows": list(range(200_000)),
    }
    fitted = fit_record(record, 1 << 20)
    assert fitted is not None
    out, _ = fitted
    assert encoded(out) <= 1 << 20
    # The message first, then the largest: the prompt (in kv), then the rows; the
    # traceback is not needed.
    assert out["msg"] == "… [truncated 9.8 KiB]"
    assert out["kv"] == {"prompt": "… [truncated 878.9 KiB]", "n": 1}
    rows_bytes = encoded({"": record["rows"]}) - 2
    assert out["rows"] == f"[truncated {human_bytes(rows_bytes)}]"  # not a str: replaced
    assert out["exc"] == record["exc"]
    assert record["kv"]["prompt"] == "p" * 900_000


def test_a_cut_keeps_whole_characters() -> None:
    record = {**BASE, "msg": "é" * 100_000}
    fitted = fit_record(record, 50_000)
    assert fitted is not None
    head = fitted[0]["msg"].split("…")[0]
    assert set(head) == {"é"}
    assert encoded(fitted[0]) <= 50_000


def test_ids_are_never_cut() -> None:
    assert fit_record({**BASE, "session_id": "s" * 5000, "msg": "m"}, 1000) is None


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3_223_943, "3.1 MiB"), (5 << 30, "5.0 GiB")],
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_put_cuts_a_record_its_estimate_shows_too_large(tmp_path: Path) -> None:
    box = outbox(tmp_path, Woken(), max_bytes=64 << 20)
    box.put("a", 1, {**BASE, "msg": "x" * 3_000_000}, 20)
    ((_, _, _, record, _, size, _),) = box.pending
    assert isinstance(record, dict)
    assert record["msg"].endswith("… [truncated 1.9 MiB]")
    assert size < 1 << 20
    assert (box.truncated, box.dropped) == (1, 0)
    sent: list[bytes] = []
    box.fill_window(sent.append, 10.0)
    assert len(sent) == 1
    assert len(sent[0]) <= 1 << 20


def test_the_sender_cuts_a_record_its_estimate_missed(tmp_path: Path) -> None:
    """Two bytes a character: the estimate (characters) says it fits, the encoding does not."""
    box = outbox(tmp_path, Woken())
    box.put("a", 1, {**BASE, "msg": "é" * 700_000}, 20)
    box.put("a", 2, {**BASE, "msg": "next"}, 20)
    assert box.truncated == 0
    sent: list[bytes] = []
    box.fill_window(sent.append, 10.0)
    assert (box.truncated, box.dropped) == (1, 0)
    assert all(len(message) <= 1 << 20 for message in sent)
    decoder = wire.ForwardDecoder(max_message_bytes=1 << 20)
    for message in sent:
        decoder.receive_data(message)
    msgs = []
    while isinstance(event := decoder.next_event(), wire.Entries):
        msgs += [record["msg"] for _, record in event.entries]
    assert re.search(r"^é+… \[truncated 3\d\d\.\d KiB\]$", msgs[0])
    assert msgs[1:] == ["next"]
    assert sum(batch.count for batch in box.inflight) == 2


def test_a_record_that_cannot_be_cut_to_fit_is_dropped_and_reported(tmp_path: Path) -> None:
    box = outbox(tmp_path, Woken())
    box.put("a", 1, {**BASE, "session_id": "s" * 2_000_000, "msg": "m"}, 20)
    sent: list[bytes] = []
    box.fill_window(sent.append, 10.0)
    assert (box.truncated, box.dropped) == (0, 1)
