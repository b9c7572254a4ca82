"""The throughput reference: decode Forward batches, append one line per record, ack.

`python -m tests.bench.bare_server --socket S --out FILE [--fsync] [--per-read]`. No
routing, no index, no metadata: the floor a Python+trio daemon can reach with the same
client and wire code. `--per-read` writes every message one read brought as one batch
(one fsync, then their acks in order): the reference of `bench_connection`.
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


async def handle_per_read(stream: trio.SocketStream, out: BinaryIO, fsync: bool) -> None:
    """Serve one producer until it closes: each read's messages are one batch."""
    decoder = wire.ForwardDecoder()
    async with stream:
        while data := await stream.receive_some(65536):
            decoder.receive_data(data)
            text: list[str] = []
            acks: list[bytes] = []
            while isinstance(event := decoder.next_event(), wire.Entries):
                text += [line(t, r) for t, r in event.entries]
                if event.chunk is not None:
                    acks.append(wire.encode_ack(event.chunk))
            out.write("".join(text).encode("utf-8", "surrogateescape"))
            out.flush()
            if fsync:
                os.fsync(out.fileno())
            if acks:
                await stream.send_all(b"".join(acks))


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


async def main(socket_path: str, out_path: Path, fsync: bool, per_read: bool) -> None:
    """Listen until SIGTERM or SIGINT."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(socket_path)
    sock.listen(1024)
    listener = trio.SocketListener(sock)
    with open(out_path, "ab") as out, trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            serve = handle_per_read if per_read else handle
            nursery.start_soon(trio.serve_listeners, lambda s: serve(s, out, fsync), [listener])
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    os.unlink(socket_path)


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--socket", required=True)
    args.add_argument("--out", required=True, type=Path)
    args.add_argument("--fsync", action="store_true", help="fsync before each ack, as logd")
    args.add_argument("--per-read", action="store_true", help="one batch per read")
    ns = args.parse_args()
    trio.run(main, ns.socket, ns.out, ns.fsync, ns.per_read)
