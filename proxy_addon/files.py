"""Opening the files vcr-proxy reads and writes (cassettes, sidecars, side files, the CA) so that
something other than a regular file in their place is an error, never a hang.

A FIFO opened the ordinary way blocks until a writer (or reader) comes, in a thread the proxy
then cannot stop, and a character device such as /dev/zero reads forever. So the file is opened
with O_NONBLOCK (a FIFO opens at once, or fails with ENXIO when opened for writing with no
reader) and its type checked on the descriptor itself: a FIFO swapped in after some earlier
check cannot block either. On a regular file O_NONBLOCK changes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import CassetteError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

CASSETTE_ADVICE = "a cassette is a regular .yaml file: move it away, or name another cassette"

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a st_mode is, in words ("a FIFO (named pipe)"); "a regular file" for one."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


class NotRegularFile(CassetteError):
    """A FIFO, device, socket or folder where a regular file should be."""


def not_regular(path, kind: str, advice: str) -> NotRegularFile:
    return NotRegularFile(path, f"is {kind}, not a regular file; {advice}")


def open_regular(path, flags: int = os.O_RDONLY, mode: int = 0o644,
                 advice: str = "move it away, or name a regular file") -> int:
    """A descriptor for `path`, which must be a regular file: CassetteError (one line naming
    it, with `advice`) for a FIFO, device, socket or directory, before anything is read or
    written. OSError as os.open raises it otherwise (FileNotFoundError...)."""
    try:
        descriptor = os.open(path, flags | _NONBLOCK | _CLOEXEC, mode)
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.EISDIR, errno.EOPNOTSUPP):
            # ENXIO: a FIFO opened for writing that no one reads, or a socket; EISDIR: a
            # folder opened for writing.
            try:
                kind = file_kind(os.stat(path).st_mode)
            except OSError:
                raise error from None
            raise not_regular(path, kind, advice) from None
        raise
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise not_regular(path, file_kind(info.st_mode), advice)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_regular(path, advice: str = "move it away, or name a regular file") -> bytes:
    """The bytes of the regular file `path` (see open_regular for what else it may raise)."""
    descriptor = open_regular(path, os.O_RDONLY, advice=advice)
    with os.fdopen(descriptor, "rb") as stream:
        return stream.read()


def regular_problem(path: Path) -> str | None:
    """Why `path` (which may be missing) cannot be read as a regular file, or None: for
    checking files another program opens (mitmproxy reads its CA files the ordinary way)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if stat.S_ISREG(info.st_mode):
        return None
    return f"is {file_kind(info.st_mode)}, not a regular file"
