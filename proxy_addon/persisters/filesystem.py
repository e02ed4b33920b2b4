"""Cassettes on disk: every write is atomic, and a file that does not load is never replaced."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..cassette import Cassette, load
from ..errors import CassetteError
from ..serializers.emitter import Layout


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over the old one; the folder is synced so the rename itself survives a power cut.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
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
    write_atomic(path, cassette.dumps(layout).encode("utf-8"))
