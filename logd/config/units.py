"""Human strings to numbers: sizes (``"10 MiB"``), durations (``"12h"``), ``HOST:PORT``.

Pure: no I/O. The config's converters (``config.values``) call these and turn a
``ValueError`` into a ``ConfigError`` naming file, key and value.
"""

from __future__ import annotations

import ipaddress
import re
from fractions import Fraction

__all__ = ["MiB", "is_loopback_host", "parse_duration_s", "parse_hostport", "parse_size"]

MiB = 1024 * 1024

_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*")
_DURATION_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """Bytes in ``"10 MiB"``, ``"100MB"``, ``"512k"`` (k/M/G/T alone are binary).

    Raises:
        ValueError: not a size.
    """
    m = _SIZE_RE.fullmatch(text)
    unit = _SIZE_UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(f"not a size: {text!r}")
    return int(Fraction(m.group(1)) * unit)


def parse_duration_s(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"12h"``, ``"1.5d"``, ``"2w"``.

    Raises:
        ValueError: not a duration.
    """
    m = _DURATION_RE.fullmatch(text)
    unit = _DURATION_S.get(m.group(2)) if m else None
    if m is None or unit is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(Fraction(m.group(1)) * unit)


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:24224"``, ``"localhost:24224"`` or ``"[::1]:24224"`` -> (host, port).

    Port 0 is allowed: the OS picks one (tests use it).

    Raises:
        ValueError: with a short reason.
    """
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError('must be HOST:PORT, an IPv6 host in brackets like "[::1]:24224"')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or any(c.isspace() for c in host):
            raise ValueError('must be HOST:PORT like "127.0.0.1:24224"')
        if ":" in host:
            raise ValueError('an IPv6 host must be in brackets, like "[::1]:24224"')
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError("the port must be a number from 0 to 65535")
    return host, int(port_text)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as remote."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
