"""Which resent messages count as already written."""

from __future__ import annotations

import pytest

from logd.write.dedup import Dedup, chunk_key


@pytest.mark.parametrize(
    ("chunk", "key"),
    [
        ("0123abcd:0", ("0123abcd", 0)),
        ("0123456789abcdef:42", ("0123456789abcdef", 42)),
        ("NzM4MTg5YjQtNGE1Zi00", None),  # fluent-logger's random base64 chunk
        (b"0123abcd:1", None),
        ("0123abcd:", None),
        ("0123abcd:-1", None),
        ("xyz:1", None),
        (None, None),
    ],
)
def test_chunk_key(chunk: str | bytes | None, key: tuple[str, int] | None) -> None:
    assert chunk_key(chunk) == key


def test_resend_at_or_below_the_high_mark_is_a_duplicate() -> None:
    dedup = Dedup()
    dedup.commit([("aaaaaaaa", 1), ("aaaaaaaa", 2)])
    assert dedup.already_written(("aaaaaaaa", 1))
    assert dedup.already_written(("aaaaaaaa", 2))
    assert not dedup.already_written(("aaaaaaaa", 3))
    assert not dedup.already_written(("bbbbbbbb", 1))
    assert not dedup.already_written(None)


def test_producers_are_bounded_oldest_first() -> None:
    dedup = Dedup(max_producers=2)
    dedup.commit([("aaaaaaaa", 1)])
    dedup.commit([("bbbbbbbb", 1)])
    dedup.commit([("aaaaaaaa", 2)])
    dedup.commit([("cccccccc", 1)])
    assert dedup.already_written(("aaaaaaaa", 2))
    assert dedup.already_written(("cccccccc", 1))
    assert not dedup.already_written(("bbbbbbbb", 1)), "least recently used producer forgotten"


def test_highest_per_producer() -> None:
    from logd.write.dedup import highest

    keys = [("aaaaaaaa", 3), ("bbbbbbbb", 1), ("aaaaaaaa", 9), ("aaaaaaaa", 4)]
    assert highest(keys) == {"aaaaaaaa": 9, "bbbbbbbb": 1}
    assert highest([]) == {}
