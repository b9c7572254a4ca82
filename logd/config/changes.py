"""What differs between two configurations, and which of it a reload cannot apply.

Pure: `logd-ctl reload` names the keys that wait for a restart, and the daemon's own
timeline records every changed key (`logd:reload`). Both read the same list from here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logd.config import Config

__all__ = ["RESTART_KEYS", "changed_keys", "needs_restart"]

# Top-level settings a running daemon keeps until it is restarted (SPEC §10).
RESTART_KEYS = ("root", "listen", "forward", "state_dir")
# Where the configuration came from is not a setting.
_IGNORED = frozenset({"config_file"})


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted names of the settings that differ, e.g. `rotation.run.max_bytes`.

    Nested sections are compared field by field; a list of sections (`forward`) as one.
    """
    return [key for key in _diff(old, new, "") if key.split(".", 1)[0] not in _IGNORED]


def needs_restart(keys: list[str]) -> list[str]:
    """The changed keys a reload cannot apply: they take effect at the next start."""
    return [key for key in keys if key.split(".", 1)[0] in RESTART_KEYS]


def _diff(old: Any, new: Any, prefix: str) -> list[str]:
    if old == new:
        return []
    if (
        dataclasses.is_dataclass(old)
        and dataclasses.is_dataclass(new)
        and type(old) is type(new)
        and not isinstance(old, type)
    ):
        keys: list[str] = []
        for item in dataclasses.fields(old):
            keys += _diff(
                getattr(old, item.name), getattr(new, item.name), prefix + item.name + "."
            )
        return keys
    return [prefix.rstrip(".")]
