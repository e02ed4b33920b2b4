"""Writing the realtime sidecar: every write under the cassette's advisory lock
(`.NAME.yaml.lock`, the one cassette writers take), the sidecar never followed through a symlink
or a hard link and never opened if it is a FIFO or a device (persisters/filesystem.py's side-file
rules); a sidecar started anew is replaced atomically, later lines are appended.

Writes run on one background thread, in the order they were asked for, so the event loop never
waits for the disk and a session's lines stay in order.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import CassetteError
from ..persisters.filesystem import _pid_alive, open_side_file, refuse_odd_file
from .format import sidecar_path

log = logging.getLogger("vcr-proxy")

_OPEN_PREFIX = b'{"type":"open","session":'


class SidecarStore:
    """One cassette's realtime sidecar. `fresh`: the file starts anew (record mode) once per
    selection, at the selection or before this store's first session, whichever comes first.

    Several proxies may record one cassette at once (pytest-xdist workers): a fresh start is
    skipped when another process that is still running started the file anew (its pid is in
    `.NAME.realtime.started`), so that no proxy wipes another's sessions; each session takes
    the next free id under the lock."""

    def __init__(self, cassette: Path, fresh: bool):
        self.cassette = Path(cassette)
        self.path = sidecar_path(self.cassette)
        self.lockfile = self.cassette.with_name(f".{self.cassette.name}.lock")
        self.startfile = self.cassette.with_name(f".{self.cassette.stem}.realtime.started")
        self.fresh = fresh
        self.checked = False
        self.lock = threading.Lock()

    def check(self) -> None:
        """CassetteError now if the sidecar or the lock is a symlink, a FIFO, a device..."""
        refuse_odd_file(self.path, self.cassette)
        refuse_odd_file(self.lockfile, self.cassette)
        refuse_odd_file(self.startfile, self.cassette)
        self.checked = True

    def start_anew(self) -> bool:
        """The fresh start, now (a selection in record mode): the sidecar removed, unless
        another running process started it anew. Whether it was removed."""
        with self.lock, self._locked():
            return self._start_anew()

    def _start_anew(self) -> bool:
        self.fresh = False
        refuse_odd_file(self.startfile, self.cassette)
        try:
            descriptor = open_side_file(self.startfile, os.O_RDWR | os.O_CREAT, self.cassette)
        except FileNotFoundError:
            return False
        try:
            try:
                started = int(os.pread(descriptor, 32, 0).split()[0])
            except (ValueError, IndexError):
                started = None
            if started is not None and started != os.getpid() and _pid_alive(started):
                return False  # another proxy's recording under way: joined, not wiped
            refuse_odd_file(self.path, self.cassette)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            return True
        finally:
            os.close(descriptor)

    def _locked(self):
        store = self

        class _Held:
            def __enter__(self):
                store.cassette.parent.mkdir(parents=True, exist_ok=True)
                self.descriptor = open_side_file(store.lockfile, os.O_RDWR | os.O_CREAT, store.cassette)
                fcntl.flock(self.descriptor, fcntl.LOCK_EX)
                return self

            def __exit__(self, *exc):
                os.close(self.descriptor)  # releases the flock

        return _Held()

    def _next_id(self) -> int:
        refuse_odd_file(self.path, self.cassette)
        try:
            descriptor = open_side_file(self.path, os.O_RDONLY, self.cassette)
        except FileNotFoundError:
            return 0
        with os.fdopen(descriptor, "rb") as stream:
            data = stream.read()
        highest = -1
        for line in data.split(b"\n"):
            if line.startswith(_OPEN_PREFIX):
                try:
                    highest = max(highest, int(json.loads(line)["session"]))
                except (ValueError, KeyError, TypeError):
                    continue
        return highest + 1

    def open_session(self, make_line) -> int:
        """Write a session's open line (`make_line(id)`), with the next free session id; the id."""
        with self.lock, self._locked():
            if self.fresh:
                self._start_anew()
            number = self._next_id()
            self._append([make_line(number)])
            return number

    def append(self, lines: list[str]) -> None:
        with self.lock, self._locked():
            self._append(lines)

    def _append(self, lines: list[str]) -> None:
        refuse_odd_file(self.path, self.cassette)
        descriptor = open_side_file(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.cassette)
        try:
            data = memoryview("".join(line + "\n" for line in lines).encode("utf-8"))
            while data:
                data = data[os.write(descriptor, data):]
        finally:
            os.close(descriptor)

    def sync(self) -> None:
        try:
            descriptor = open_side_file(self.path, os.O_RDONLY, self.cassette)
        except (FileNotFoundError, CassetteError):
            return
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class Writes:
    """The one thread realtime writes run on, in order."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcr-realtime")
        self.pending: set[Future] = set()

    def submit(self, function, *args) -> Future:
        future = self.pool.submit(function, *args)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)
        return future

    def wait(self, timeout: float) -> None:
        from concurrent.futures import wait
        if self.pending:
            wait(list(self.pending), timeout)
