"""Cassettes on disk: every write is atomic, and a file that does not load is never replaced."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..cassette import Cassette, Interaction, load, loads, write_interaction
from ..errors import CassetteError
from ..files import CASSETTE_ADVICE, NotRegularFile, file_kind, not_regular, open_regular
from ..serializers.emitter import Layout
from ..timing import Timing, sidecar_path


def write_atomic(path: Path, data: bytes | Callable[[Callable[[bytes], object]], None],
                 mode: int | None = None) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one.

    `data` is the bytes, or a function that writes them piece by piece to the `write` it is
    given (so a large cassette need not be held in memory as one string).
    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over the old one; the folder is synced so the rename itself survives a power cut.
    The new file keeps the old one's permissions, or gets `mode` (default 0o644).
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
        if mode is not None:
            os.chmod(temporary, mode)
        else:
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
        except NotRegularFile:
            raise  # says what to do itself
        except CassetteError as error:
            raise CassetteError(path, f"refusing to overwrite a file that does not load "
                                f"({error.problem}); move it away first", error.line) from None
    write_atomic(path, lambda write: cassette.write(write, layout))


log = logging.getLogger("vcr-proxy")

# A side file: opened where it is, never through a symlink, and never one with another name
# elsewhere (a hard link): recording must not write outside the cassette's folder.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _side_advice(cassette: Path) -> str:
    return f"vcr-proxy keeps {cassette.name}'s bookkeeping there: remove it"


def open_side_file(path: Path, flags: int, cassette: Path) -> int:
    """A descriptor for a file beside `cassette`, opened without following a symlink.

    CassetteError (one line, naming the file) if it is a symlink, not a regular file (a FIFO
    there is refused, not waited on) or has other hard links; nothing has been written then.
    """
    try:
        descriptor = open_regular(path, flags | _NOFOLLOW, advice=_side_advice(cassette))
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK) or (error.errno == errno.EEXIST
                                                         and os.path.islink(path)):
            raise _symlink_error(path, cassette) from None
        raise
    try:
        info = os.fstat(descriptor)
        if info.st_nlink > 1:
            raise CassetteError(path, f"has {info.st_nlink - 1} other hard link(s), so writing "
                                "it would change a file elsewhere; remove it (vcr-proxy recreates it)")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _symlink_error(path: Path, cassette: Path) -> CassetteError:
    return CassetteError(path, f"is a symlink; vcr-proxy never writes {cassette.name}'s side files "
                         "through one (it could overwrite a file outside the folder): remove it")


def refuse_odd_file(path: Path, cassette: Path) -> None:
    """CassetteError if a side file of `cassette` that is about to be replaced or opened is a
    symlink, or something other than a regular file (a FIFO, a device, a folder)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _symlink_error(path, cassette)
    if not stat.S_ISREG(info.st_mode):
        raise not_regular(path, file_kind(info.st_mode), _side_advice(cassette))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _state(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from another: device, inode, size, mtime."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


class _Stale(Exception):
    """The file is not what this writer last saw in a way a tail cannot explain."""


class CassetteWriter:
    """Saves interactions to one cassette file as they complete, at a cost that does not grow
    with the file, from any number of threads and processes at once.

    The first interaction writes the whole file atomically. Later ones are appended: in Go's
    layout an interaction's bytes do not depend on its neighbours, so the file after an
    append is exactly what Go would write for the longer cassette. Before each append a marker
    (`.NAME.yaml.appending`, holding the old size) is left beside the file; if the process
    dies inside the append, the next writer cuts the torn tail back. The event-timing sidecar
    grows the same way, one JSON line per interaction.

    Several processes (pytest-xdist workers, each with its own proxy) may write one cassette:
    every write happens under an advisory lock (`fcntl.flock` on `.NAME.yaml.lock`). A writer
    that finds the file changed since its own last write reads the interactions added since
    (only the new tail) or, if the file was replaced, the whole file again; the id it writes
    is then free in the file (see `append`).

    `fresh` starts the cassette anew (go-vcr's record mode), on the writer's first
    interaction, unless another writer already started it anew meanwhile: if the file changed
    since this writer opened it, or the process that last started it anew is still running,
    the new interactions join it instead. So several workers recording at once share one new
    cassette (none wipes another's interactions), and the next run starts over.

    A file that does not load, or that is not in Go's bytes (edited by hand, or using YAML
    aliases that Go would expand on save), is never rewritten: the writer refuses it.
    A cassette (or its folder) deleted while recording is started again, from id 0.
    """

    def __init__(self, path: Path, layout: Layout, fresh: bool):
        self.path = Path(path)
        self.folder = self.path.parent
        self.sidecar = sidecar_path(self.path)
        self.marker = self.path.with_name(f".{self.path.name}.appending")
        self.lockfile = self.path.with_name(f".{self.path.name}.lock")
        self.lock = threading.Lock()  # one append at a time in this process
        self.id_lock = threading.Lock()  # reserve_id never waits for an append
        self.turns = threading.Condition()  # appends in the order their turns were taken
        self.turns_taken = 0
        self.turn = 0  # the turn whose append may go now
        self.turns_ended: set[int] = set()  # later turns already over (skipped, failed)
        self.fresh = fresh
        self.started = not fresh  # whether this writer's file is the one it writes to
        self.layout = layout
        self.default_layout = layout
        self.next_id = 0
        self.pending: set[int] = set()  # ids reserved and not yet written
        self.stale: set[int] = set()  # reserved before the file was recreated
        self.ids: set[int] = set()  # the ids in the file, as of `seen`
        self.own: set[int] = set()  # those this writer wrote
        self.count = 0  # interactions in the file, as of `seen`
        self.seen: tuple | None = None  # the file's _state after this writer's last look
        self.existed = False  # the file was there when last seen (else: nothing to recreate)
        with self._locked():
            self._open()

    # The lock ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self):
        """This process's and every other's exclusive hold on the cassette."""
        for side in (self.marker, self.sidecar):
            refuse_odd_file(side, self.path)
        while True:
            self.folder.mkdir(parents=True, exist_ok=True)
            descriptor = open_side_file(self.lockfile, os.O_RDWR | os.O_CREAT, self.path)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                # A lock file deleted (with its folder) and created again by another writer
                # is another lock: hold the one that is there now.
                try:
                    same = os.stat(self.lockfile, follow_symlinks=False).st_ino == os.fstat(descriptor).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    self._lock_descriptor = descriptor
                    yield descriptor
                    return
            finally:
                os.close(descriptor)  # closing releases the flock

    def _generation(self) -> tuple[int, int] | None:
        """(pid, inode) of the last process that started the cassette anew, from the lock file."""
        try:
            text = os.pread(self._lock_descriptor, 100, 0).decode("ascii", "replace").split()
            return int(text[0]), int(text[1])
        except (ValueError, IndexError, OSError):
            return None

    def _record_generation(self) -> None:
        state = _state(self.path)
        data = f"{os.getpid()} {state[1] if state else 0}\n".encode()
        os.ftruncate(self._lock_descriptor, 0)
        os.pwrite(self._lock_descriptor, data, 0)

    # Reading the file ----------------------------------------------------------------------

    def _open(self) -> None:
        self._recover_torn_append()
        state = _state(self.path)
        self.opened = state
        if state is None:
            self.started = True  # nothing to start anew: the first interaction creates it
            return
        cassette = self._load_whole(state, "record over")
        if self.fresh:
            return
        self._adopt(cassette, state)

    def _load_whole(self, state, doing: str) -> Cassette:
        try:
            cassette = load(self.path)
        except NotRegularFile:
            raise  # says what to do itself
        except CassetteError as error:
            raise CassetteError(self.path, f"refusing to {doing} a cassette that does not "
                                f"load ({error.problem}); move it away first", error.line) from None
        if self.fresh and not self.started:
            return cassette  # replaced on the first interaction: its bytes do not matter
        if cassette.aliases:
            raise CassetteError(self.path, f"uses YAML aliases ({cassette.aliases}), which Go "
                                "expands when it saves, so vcr-proxy will not append to it; "
                                "replace the aliases with their values, or re-record")
        if cassette.interactions and not _is_gos_bytes(cassette, self.path):
            raise CassetteError(self.path, "is not in the bytes Go writes (edited by hand?), so "
                                "vcr-proxy will not append to it; run `vcr-proxy fmt "
                                f"{self.path}` first, or re-record")
        return cassette

    def _adopt(self, cassette: Cassette, state) -> None:
        if cassette.interactions:
            self.layout = cassette.layout
        self.ids = {i.id for i in cassette.interactions}
        self.count = len(cassette.interactions)
        self.seen, self.existed = state, True
        self._after_foreign_ids()

    def _after_foreign_ids(self) -> None:
        # Later reservations come after every id in the file, so they need no adjusting.
        with self.id_lock:
            self.next_id = max(self.next_id, max(self.ids, default=-1) + 1)

    def _catch_up(self, state) -> None:
        """Bring `ids`/`count` up to the file as it is now (`state`), which another writer
        changed: read just the interactions it appended, or the whole file if it did more."""
        if self.seen is not None and state[:2] == self.seen[:2] and state[2] >= self.seen[2]:
            try:
                self._read_tail(self.seen[2], state[2])
                self.seen = state
                self._after_foreign_ids()
                return
            except _Stale:
                pass
        self._adopt(self._load_whole(state, "append to"), state)

    def _read_tail(self, start: int, end: int) -> None:
        if end == start:
            return
        if self.count == 0:
            raise _Stale  # an empty cassette is only ever replaced, never appended to
        with _open_cassette(self.path, os.O_RDONLY, "rb") as stream:
            stream.seek(start)
            tail = stream.read(end - start)
        try:
            added = loads(b"version: 2\ninteractions:\n" + tail, str(self.path))
        except CassetteError:
            raise _Stale from None
        if not added.interactions or added.aliases:
            raise _Stale
        ids = {i.id for i in added.interactions}
        if ids & self.ids or len(ids) != len(added.interactions):
            raise _Stale  # not a clean append: let the whole file's load say what is wrong
        self.ids |= ids
        self.count += len(added.interactions)

    def _recover_torn_append(self) -> None:
        """Cut back what a writer that died inside an append left (we hold the lock, so no
        live writer is inside one)."""
        try:
            descriptor = open_side_file(self.marker, os.O_RDONLY, self.path)
        except FileNotFoundError:
            return
        try:
            size = int(os.read(descriptor, 64).decode("ascii", "replace").strip() or "x")
        except ValueError:
            size = None
        finally:
            os.close(descriptor)
        if size is not None:
            try:
                load(self.path)
            except CassetteError:
                if self.path.exists() and self.path.stat().st_size > size:
                    with _open_cassette(self.path, os.O_RDWR, "r+b") as stream:
                        stream.truncate(size)
                        os.fsync(stream.fileno())
        self.marker.unlink(missing_ok=True)

    # Writing -------------------------------------------------------------------------------

    def reserve_id(self) -> int:
        """The id for a request that starts now: ids follow request order in this process.
        The id written may differ (see `append`), when other processes write the file too."""
        with self.id_lock:
            self.next_id += 1
            self.pending.add(self.next_id - 1)
            return self.next_id - 1

    def release_id(self, reserved: int) -> None:
        """A reserved id that will not be written (the exchange failed)."""
        with self.id_lock:
            self.pending.discard(reserved)

    def take_turn(self) -> int:
        """A place in line for `append`: appends given turns happen in the order the turns
        were taken (when each exchange ended), however their threads are scheduled. Every
        turn taken must reach `append` or `end_turn`."""
        with self.turns:
            self.turns_taken += 1
            return self.turns_taken - 1

    def end_turn(self, turn: int) -> None:
        """Turn `turn` is over (appended, failed or given up): the next one may go."""
        with self.turns:
            if turn < self.turn:
                return
            self.turns_ended.add(turn)
            while self.turn in self.turns_ended:
                self.turns_ended.discard(self.turn)
                self.turn += 1
            self.turns.notify_all()

    def append(self, interaction: Interaction, timing: Timing, turn: int | None = None) -> int:
        """Write `interaction` (and its timing line) to the cassette; returns the id written.

        That is the id it carries (reserved by `reserve_id`) when the id is free in the file
        and above every id other processes wrote; otherwise the next id after all those in
        the file. `interaction.id` and `timing.id` are set to it. With a `turn`
        (`take_turn`), it waits for the turns before it.
        """
        if turn is None:
            return self._append_now(interaction, timing)
        with self.turns:
            while self.turn < turn:
                self.turns.wait()
        try:
            return self._append_now(interaction, timing)
        finally:
            self.end_turn(turn)

    def _append_now(self, interaction: Interaction, timing: Timing) -> int:
        with self.lock, self._locked():
            self._recover_torn_append()
            state = _state(self.path)
            if not self.started:
                self._start(state)
                state = _state(self.path)
            elif state is None and self.existed:
                log.warning(f"vcr-proxy: {self.path} was deleted while recording; "
                            "starting it again (ids from 0)")
                self._recreate()
            elif state != self.seen:
                self._catch_up(state)
            chosen = self._choose_id(interaction.id)
            interaction.id = timing.id = chosen
            if self.count == 0:
                self._write_whole(interaction, timing)
            else:
                self._append(interaction, timing)
            self.ids.add(chosen)
            self.own.add(chosen)
            self.count += 1
            self.seen, self.existed = _state(self.path), True
            with self.id_lock:
                self.next_id = max(self.next_id, chosen + 1)
            return chosen

    def _start(self, state) -> None:
        """A fresh writer's first interaction: start the cassette anew, or join the new
        cassette another writer started since this one opened (or is still writing)."""
        self.started = True
        generation = self._generation()
        joined = state is not None and (
            state != self.opened
            or generation is not None and generation[1] == state[1] and generation[0] != os.getpid()
            and _pid_alive(generation[0]))
        if joined:
            self._catch_up(state)
        # Otherwise the file is replaced by this writer's first interaction (count is 0).

    def _recreate(self) -> None:
        """The file is gone: the next interaction starts a new one, with id 0, in the
        configured layout; ids reserved until now are written after the new ones."""
        with self.id_lock:
            self.stale |= self.pending
            self.next_id = 0
        self.ids, self.own, self.count, self.seen = set(), set(), 0, None
        self.layout = self.default_layout
        self.existed = False

    def _choose_id(self, reserved: int) -> int:
        with self.id_lock:
            self.pending.discard(reserved)
            stale = reserved in self.stale
            self.stale.discard(reserved)
        foreign = max(self.ids - self.own, default=-1)
        if not stale and reserved not in self.ids and reserved > foreign:
            return reserved
        return max(self.ids, default=-1) + 1

    def _write_whole(self, interaction: Interaction, timing: Timing) -> None:
        cassette = Cassette(interactions=[interaction], layout=self.layout)
        refuse_odd_file(self.sidecar, self.path)
        write_atomic(self.sidecar, (timing.to_json() + "\n").encode())
        write_atomic(self.path, cassette.write)
        if self.fresh:
            # Other record-mode writers that start while this process runs join this file.
            self._record_generation()

    def _append(self, interaction: Interaction, timing: Timing) -> None:
        size = self.path.stat().st_size
        marker = open_side_file(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.path)
        try:
            _write_all(marker, str(size).encode())
        finally:
            os.close(marker)
        descriptor = open_regular(self.path, os.O_WRONLY | os.O_APPEND, advice=CASSETTE_ADVICE)
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
        sidecar = open_side_file(self.sidecar, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.path)
        try:
            _write_all(sidecar, (timing.to_json() + "\n").encode())
            os.fsync(sidecar)
        finally:
            os.close(sidecar)


def _open_cassette(path: Path, flags: int, mode: str):
    """The cassette file as a stream; CassetteError if a FIFO or a device took its place
    since it was loaded (which would otherwise block this thread, or read forever)."""
    return os.fdopen(open_regular(path, flags, advice=CASSETTE_ADVICE), mode)


class _Mismatch(Exception):
    pass


def _is_gos_bytes(cassette: Cassette, path: Path) -> bool:
    """Whether the file holds exactly what Go writes for `cassette`, compared piece by piece
    as it is serialized: a file that is not stops the comparison at its first difference
    (an aliased body is never written out hundreds of times just to find that out)."""
    with _open_cassette(path, os.O_RDONLY, "rb") as stream:
        def compare(data: bytes) -> None:
            if stream.read(len(data)) != data:
                raise _Mismatch

        try:
            cassette.write(compare)
        except _Mismatch:
            return False
        return stream.read(1) == b""
