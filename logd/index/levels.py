"""Level names and numbers, one table for the writer, the index and the readers.

Pure data. The numbers are stdlib logging's; `TRACE`, `NOTICE` and the aliases are
what foreign clients (syslog, Fluent Bit, loguru) send.
"""

from __future__ import annotations

__all__ = ["ERROR_LEVELNO", "INFO_LEVELNO", "LEVELS", "LEVEL_NAMES", "level_name", "levelno_of"]

LEVELS: dict[str, int] = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "NOTICE": 25,
    "WARNING": 30,
    "WARN": 30,
    "ERROR": 40,
    "CRITICAL": 50,
    "FATAL": 50,
}
LEVEL_NAMES: dict[int, str] = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
INFO_LEVELNO = 20
ERROR_LEVELNO = 40
"""Records at or above this level are indexed even when they are not events."""


def level_name(levelno: int) -> str:
    """`ERROR` for 40; `Level 45` for a number without a name (as stdlib logging)."""
    return LEVEL_NAMES.get(levelno, f"Level {levelno}")


def levelno_of(name: str) -> int | None:
    """The number of a level name (any case, aliases included); None when unknown."""
    return LEVELS.get(name.strip().upper())
