"""Every output's sender task, as the server runs them: open, notify, run, report, close."""

from __future__ import annotations

from typing import Any

import trio

from logd.config import Config
from logd.forward.fluent import FluentSender
from logd.forward.hub import Hub
from logd.forward.sender import Sender
from logd.forward.syslog_output import SyslogSender


class Forwarding:
    """The `[[forward]]` outputs of one daemon: the writer's `hub` and a sender each.

    Resource handling: `close()` releases the buffers; call it after `run()` ended.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.senders: dict[str, Sender] = {}
        for output in hub.outputs:
            kind = FluentSender if output.settings.type == "fluent" else SyslogSender
            self.senders[output.settings.name] = kind(output, hub.hostname)

    @classmethod
    def open(cls, config: Config, hostname: str) -> Forwarding:
        """Open every output's buffer (blocking: call from a worker thread).

        Raises:
            OSError: a buffer folder cannot be created or read.
        """
        return cls(Hub.open(config, hostname))

    def notify(self) -> None:
        """Wake the senders whose buffers got records in the last writer batch."""
        for name in self.hub.take_appended():
            self.senders[name].notify()

    async def run(self) -> None:
        """Run every sender until cancelled; unacknowledged records stay buffered."""
        async with trio.open_nursery() as nursery:
            for sender in self.senders.values():
                nursery.start_soon(sender.run)

    def status(self) -> list[dict[str, Any]]:
        return [sender.status() for sender in self.senders.values()]

    def close(self) -> None:
        self.hub.close()
