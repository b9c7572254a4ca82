"""The disk spool: Forward messages a client could not deliver, kept until acknowledged.

`frames` owns the file format, `claims` the directory and the claim protocol; both are used
through this package. No sockets, threads, clock, trio or msgpack, so logd_client's sender
thread and the daemon (at start) share it.
"""

from .claims import (
    DEFAULT_MAX_SPOOL_BYTES,
    SPOOL_DIR_ENV,
    Claim,
    SpoolBusy,
    claim_orphans,
    default_directory,
    orphans,
    prepare_directory,
    spool_name,
    total_bytes,
)
from .frames import (
    MAX_MESSAGE_BYTES,
    Frame,
    ReadReport,
    SpoolDamage,
    encode_frame,
    iter_frames,
    read_frame,
    read_messages,
)

__all__ = [
    "DEFAULT_MAX_SPOOL_BYTES",
    "MAX_MESSAGE_BYTES",
    "SPOOL_DIR_ENV",
    "Claim",
    "Frame",
    "ReadReport",
    "SpoolBusy",
    "SpoolDamage",
    "claim_orphans",
    "default_directory",
    "encode_frame",
    "iter_frames",
    "orphans",
    "prepare_directory",
    "read_frame",
    "read_messages",
    "spool_name",
    "total_bytes",
]
