"""The process's shared transports: one per daemon address, for handlers and events.

`LogdHandler`, `install()` and the event API of one process share one connection per
address; this module hands it out, and closes and forgets them at exit and in tests.
"""

from __future__ import annotations

import os
import threading

from .address import Address
from .transport import Transport

_shared_lock = threading.Lock()
_shared: dict[Address | None, Transport] = {}


def shared_transport(address: Address | None) -> Transport:
    """Return the process's transport for `address`, creating it on first use.

    Handlers and the event API of one process share one connection per address.
    """
    with _shared_lock:
        transport = _shared.get(address)
        if transport is None or transport.closed:
            transport = _shared[address] = Transport(address)
        return transport


def shared_transports() -> list[Transport]:
    """Return every shared transport of the process."""
    with _shared_lock:
        return list(_shared.values())


def forget_shared_transports(*, spool: bool = True) -> None:
    """Close and forget the shared transports (at exit, and in tests).

    Args:
        spool: spool what is not acknowledged (at exit) rather than discard it (tests).
    """
    with _shared_lock:
        transports = list(_shared.values())
        _shared.clear()
    for transport in transports:
        transport.close(spool=spool)


def _after_fork_in_child() -> None:
    # The parent's lock may have been held at fork time: the child gets a fresh one.
    global _shared_lock
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
