"""Moving full files aside: numbered backups, or dated archives for the event log.

The part of `Sinks` that knows the rotation policies and renames a file's family. Every
rename is noted in the batch's `Undo`, so a refused batch can still be cut back; the
copies go to the `Compressor` once their batch is committed or cut back. Blocking file
I/O, in the writer's thread.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from logd.config import Rotation, RotationPolicy
from logd.retention.rotation import (
    backup_renames,
    events_archive_name,
    events_rotation_due,
    rotation_due,
)
from logd.write.compressor import Compressor
from logd.write.handles import OpenFile
from logd.write.routing import Kind
from logd.write.undo import Undo

__all__ = ["Rotator"]


class Rotator:
    """The policies in force, the renames of a rotation, and the copies to compress.

    Resource handling: owns the `compressor` (its thread); `Sinks.close()` closes it.
    """

    def __init__(self, root: Path, undo: Undo, rotation: Rotation | None) -> None:
        self.root = root
        self._undo = undo
        self.policies: dict[Kind, RotationPolicy] = {}
        self.rotation = rotation
        self.compressor = Compressor()
        self.rotations = 0
        # (path, bytes) of each rotation not yet taken for the daemon's timeline.
        self._log: list[tuple[str, int]] = []

    @property
    def rotation(self) -> Rotation | None:
        """The rotation policies in force (replaced on reload)."""
        return self._rotation

    @rotation.setter
    def rotation(self, rotation: Rotation | None) -> None:
        self._rotation = rotation
        self.policies = (
            {}
            if rotation is None
            else {
                Kind.RUN: rotation.run,
                Kind.SESSION: rotation.session,
                Kind.CALL: rotation.call,
                Kind.EVENTS: rotation.events,
            }
        )

    def due(
        self, path: str, opened: OpenFile, incoming: int, policy: RotationPolicy, today: str
    ) -> bool:
        """Whether `incoming` more bytes (or a new UTC day, for the event log) rotate it."""
        if path.endswith("/events.log"):
            return events_rotation_due(opened.day, today, opened.size, incoming, policy)
        return rotation_due(opened.size, incoming, policy)

    def move_aside(self, path: str, kind: Kind, policy: RotationPolicy, opened: OpenFile) -> None:
        """Rename the file at `path`, closed by the caller, and shift its backups.

        The new copy (and any older one a crash kept from being compressed) is
        compressed later (`compress_rotated`); this waits only if the same family's
        previous copies are still being compressed.
        """
        self._log.append((path, opened.size))
        full = self.root / path
        self.compressor.wait(full)
        folder, name = full.parent, full.name
        relative = os.path.dirname(path)
        existing = set(os.listdir(folder))
        rotated: Path | None
        if kind is Kind.EVENTS:
            archive = events_archive_name(opened.day, existing, base=name)
            os.replace(full, folder / archive)
            self._undo.moved(path, posixpath.join(relative, archive))
            rotated = folder / archive
        else:
            left_plain = []  # older copies a crash kept from being compressed
            for source, target in backup_renames(name, existing, policy):
                if target is None:
                    os.unlink(folder / source)
                else:
                    os.replace(folder / source, folder / target)
                    if source != name and not target.endswith(".gz"):
                        left_plain.append(folder / target)
                self._undo.moved(
                    posixpath.join(relative, source), target and posixpath.join(relative, target)
                )
            rotated = folder / f"{name}.1" if policy.backups > 0 else None
            if policy.compress:
                self._undo.rotated += [(full, copy) for copy in left_plain]
        self.rotations += 1
        if rotated is not None and policy.compress:
            self._undo.rotated.append((full, rotated))

    def compress_rotated(self) -> None:
        """Hand the copies of a committed (or cut back) batch to the compressor."""
        for family, copy in self._undo.take_rotated():
            self.compressor.submit(family, copy)

    def take_rotations(self) -> list[tuple[str, int]]:
        """The (path, bytes) of every rotation since the last call."""
        taken, self._log = self._log, []
        return taken
