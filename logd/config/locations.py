"""Where logd's files are on this machine: systemd's ``*_DIRECTORY`` variables,
platformdirs, and the config file search path.

Reads the environment it is given and looks at the file system; it builds no `Config`
(``config.py`` does, from what these return).
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from logd.config.values import ConfigError

__all__ = [
    "APP_NAME",
    "config_search_path",
    "find_config_file",
    "first_dir",
    "read_toml",
    "user_runtime_dir",
]

APP_NAME = "logd"
CONFIG_NAME = "logd.toml"
SYSTEM_CONFIG = Path("/etc/logd/logd.toml")

# Newer platformdirs warns when $XDG_RUNTIME_DIR is missing and it falls back; we only
# need the path, and pytest (filterwarnings=error) would turn the warning into a crash.
_RUNTIME_DIR_WARNING: type[Warning] = getattr(platformdirs, "RuntimeDirWarning", UserWarning)


def first_dir(environ: Mapping[str, str], name: str) -> Path | None:
    """systemd joins several ``*_DIRECTORY`` entries with ":"; the first is ours."""
    value = environ.get(name, "")
    first = value.split(":", 1)[0]
    return Path(first) if first else None


def user_runtime_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _RUNTIME_DIR_WARNING)
        return Path(platformdirs.user_runtime_dir(APP_NAME))


def config_search_path(environ: Mapping[str, str]) -> list[Path]:
    """Where a config file is looked for when none is named, first match wins."""
    candidates = []
    systemd_dir = first_dir(environ, "CONFIGURATION_DIRECTORY")
    if systemd_dir is not None:
        candidates.append(systemd_dir / CONFIG_NAME)
    candidates.append(Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_NAME)
    candidates.append(SYSTEM_CONFIG)
    return candidates


def find_config_file(flag: str | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: ``--config``, ``$LOGD_CONFIG``, else the search path.

    Raises:
        ConfigError: a file named by the flag or the variable does not exist.
    """
    for origin, named in (("--config", flag), ("LOGD_CONFIG", environ.get("LOGD_CONFIG"))):
        if named:
            path = Path(named)
            if not path.is_file():
                problem = "is not a file" if path.exists() else "no such file"
                raise ConfigError(f"{origin} {named}: {problem}")
            return path
    for path in config_search_path(environ):
        if path.is_file():
            return path
    return None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({exc.reason})") from None
