"""Cassettes on disk: every write is atomic, and a file that does not load is never replaced."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from ..cassette import Cassette, Interaction, load, write_interaction
from ..errors import CassetteError
from ..serializers.emitter import Layout
from ..timing import Timing, sidecar_path


def write_atomic(path: Path, data: bytes | Callable[[Callable[[bytes], object]], None]) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one.

    `data` is the bytes, or a function that writes them piece by piece to the `write` it is
    given (so a large cassette need not be held in memory as one string).
    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over the old one; the folder is synced so the rename itself survives a power cut.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            if callable(data):
                data(stream.write)
            else:
                stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    sync_folder(folder)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save(cassette: Cassette, path: Path, layout: Layout | None = None) -> None:
    """Write `cassette` to `path` in Go's bytes, refusing to replace a file that does not load."""
    path = Path(path)
    if path.exists():
        try:
            load(path)
        except CassetteError as error:
            raise CassetteError(path, f"refusing to overwrite a file that does not load "
                                f"({error.problem}); move it away first", error.line) from None
    write_atomic(path, lambda write: cassette.write(write, layout))


class CassetteWriter:
    """Saves interactions to one cassette file as they complete, at a cost that does not grow
    with the file.

    The first interaction writes the whole file atomically. Later ones are appended: in Go's
    layout an interaction's bytes do not depend on its neighbours, so the file after an
    append is exactly what Go would write for the longer cassette. Before each append a marker
    (`.NAME.yaml.appending`, holding the old size) is left beside the file; if the process
    dies inside the append, the next writer that opens the cassette cuts the torn tail back.
    The event-timing sidecar grows the same way, one JSON line per interaction.

    `fresh` starts the cassette anew on its first interaction (go-vcr's record mode); otherwise
    new interactions go after the existing ones. A file that does not load is never touched.
    Safe to call from several threads.
    """

    def __init__(self, path: Path, layout: Layout, fresh: bool):
        self.path = Path(path)
        self.sidecar = sidecar_path(self.path)
        self.marker = self.path.with_name(f".{self.path.name}.appending")
        self.lock = threading.Lock()
        self.fresh = fresh
        self.count = 0  # interactions in the file
        self.layout = layout
        self.next_id = 0
        self._open()

    def _open(self) -> None:
        self._recover_torn_append()
        if not self.path.exists():
            return
        try:
            cassette = load(self.path)
        except CassetteError as error:
            raise CassetteError(self.path, f"refusing to record over a cassette that does not "
                                f"load ({error.problem}); move it away first", error.line) from None
        if self.fresh:
            return
        self.layout = cassette.layout if cassette.interactions else self.layout
        self.count = len(cassette.interactions)
        self.next_id = cassette.next_id()
        if self.count and cassette.dumps().encode() != self.path.read_bytes():
            # Appending Go's bytes to a hand-formatted file would not be what Go writes.
            write_atomic(self.path, cassette.dumps().encode())

    def _recover_torn_append(self) -> None:
        try:
            size = int(self.marker.read_text())
        except (FileNotFoundError, ValueError):
            return
        try:
            load(self.path)
        except CassetteError:
            if self.path.exists() and self.path.stat().st_size > size:
                with open(self.path, "r+b") as stream:
                    stream.truncate(size)
                    os.fsync(stream.fileno())
        self.marker.unlink(missing_ok=True)

    def reserve_id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id - 1

    def append(self, interaction: Interaction, timing: Timing) -> None:
        with self.lock:
            if self.count == 0:
                self._write_first(interaction, timing)
            else:
                self._append(interaction, timing)
            self.count += 1

    def _write_first(self, interaction: Interaction, timing: Timing) -> None:
        if self.path.exists() and not self.fresh:
            try:
                load(self.path)
            except CassetteError as error:
                raise CassetteError(self.path, f"refusing to overwrite a file that does not load "
                                    f"({error.problem})", error.line) from None
        cassette = Cassette(interactions=[interaction], layout=self.layout)
        write_atomic(self.sidecar, (timing.to_json() + "\n").encode())
        write_atomic(self.path, cassette.write)

    def _append(self, interaction: Interaction, timing: Timing) -> None:
        size = self.path.stat().st_size
        self.marker.write_text(str(size))
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            write_interaction(interaction, self.layout, lambda data: _write_all(descriptor, data))
            os.fsync(descriptor)
        except BaseException:
            # The item is written as it is serialized: leave no part of it behind.
            os.ftruncate(descriptor, size)
            raise
        finally:
            os.close(descriptor)
        self.marker.unlink(missing_ok=True)
        with open(self.sidecar, "ab") as stream:
            stream.write((timing.to_json() + "\n").encode())
            stream.flush()
            os.fsync(stream.fileno())
