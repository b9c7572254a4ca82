"""The shared read-ahead pool gives way to open connections (`read_ahead_pool`)."""

from __future__ import annotations

from logd.config import Limits
from logd.ingest.batching import (
    READ_AHEAD_FLOOR,
    READ_AHEAD_PER_CONNECTION,
    READ_AHEAD_SHARES,
    read_ahead_limit,
    read_ahead_pool,
)

MiB = 1024 * 1024


def test_a_few_busy_clients_get_the_whole_pool() -> None:
    default = Limits().read_ahead_bytes
    assert default == MiB
    full = READ_AHEAD_SHARES * default
    assert read_ahead_pool(default, 0) == full
    assert read_ahead_pool(default, 4) == full - 4 * READ_AHEAD_PER_CONNECTION


def test_the_pool_shrinks_with_every_connection_down_to_its_floor() -> None:
    sizes = [read_ahead_pool(MiB, n) for n in range(0, 2001, 50)]
    assert sizes == sorted(sizes, reverse=True)
    assert len(set(sizes)) > 10  # it shrinks step by step, not at one threshold
    # A thousand idle clients (the memory goal's case) leave it where 128 KiB each left it.
    assert read_ahead_pool(MiB, 1000) == READ_AHEAD_FLOOR == READ_AHEAD_SHARES * 128 * 1024
    assert read_ahead_pool(MiB, 100_000) == READ_AHEAD_FLOOR


def test_a_pool_smaller_than_the_floor_is_left_alone() -> None:
    small = 64 * 1024  # an operator's own, smaller setting: connections do not shrink it
    assert read_ahead_pool(small, 0) == read_ahead_pool(small, 5000) == READ_AHEAD_SHARES * small
    assert read_ahead_pool(0, 0) == read_ahead_pool(0, 3) == 0  # off stays off


def test_one_connection_takes_at_most_a_quarter_of_the_pool_and_its_limit() -> None:
    assert read_ahead_limit(MiB, read_ahead_pool(MiB, 0)) == MiB
    assert read_ahead_limit(MiB, read_ahead_pool(MiB, 1000)) == READ_AHEAD_FLOOR // 4
    assert read_ahead_limit(0, read_ahead_pool(0, 5)) == 0
