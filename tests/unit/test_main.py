"""`logd serve`'s startup errors: one message per cause, however trio nested them."""

from __future__ import annotations

from logd.__main__ import startup_failures
from logd.ingest.listeners import StartupError


def test_startup_failures_flattens_nested_groups() -> None:
    busy = StartupError("another daemon is already listening on /run/logd/ctl.sock")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [ExceptionGroup("deep", [busy])])])
    assert startup_failures(nested) == [str(busy)]


def test_startup_failures_keeps_each_cause_once_in_order() -> None:
    first, second = StartupError("first"), StartupError("second")
    group = ExceptionGroup("g", [first, ExceptionGroup("h", [StartupError("first"), second])])
    assert startup_failures(group) == ["first", "second"]
