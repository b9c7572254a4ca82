"""The throughput reference: decode Forward batches, append one line per record, ack.

`python -m tests.bench.bare_server --socket S --out FILE [--fsync]`. No routing, no index,
no metadata: the floor a Python+trio daemon can reach with the same client and wire code.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path
from typing import BinaryIO

import trio
from logd_client import wire


def line(time_ns: int, record: dict[str, object]) -> str:
    """The main.log line of a record: `[session] - local time,ms - logger - LEVEL - msg`."""
    seconds, ns = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    session = record.get("session_id") or "in-progress"
    return (
        f"[{session}] - {stamp},{ns // 1_000_000:03d} - {record.get('logger')} - "
        f"{record.get('level')} - {record.get('msg')}\n"
    )


async def handle(stream: trio.SocketStream, out: BinaryIO, fsync: bool) -> None:
    """Serve one producer until it closes."""
    decoder = wire.ForwardDecoder()
    async with stream:
        while data := await stream.receive_some(65536):
            decoder.receive_data(data)
            while (event := decoder.next_event()) is not None:
                if isinstance(event, wire.Entries):
                    text = "".join(line(t, r) for t, r in event.entries)
                    out.write(text.encode("utf-8", "surrogateescape"))
                    out.flush()
                    if fsync:
                        os.fsync(out.fileno())
                    if event.chunk is not None:
                        await stream.send_all(wire.encode_ack(event.chunk))
                elif isinstance(event, wire.Closed):
                    return


async def main(socket_path: str, out_path: Path, fsync: bool) -> None:
    """Listen until SIGTERM or SIGINT."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(socket_path)
    sock.listen(1024)
    listener = trio.SocketListener(sock)
    with open(out_path, "ab") as out, trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, lambda s: handle(s, out, fsync), [listener])
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    os.unlink(socket_path)


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--socket", required=True)
    args.add_argument("--out", required=True, type=Path)
    args.add_argument("--fsync", action="store_true", help="fsync before each ack, as logd")
    ns = args.parse_args()
    trio.run(main, ns.socket, ns.out, ns.fsync)
