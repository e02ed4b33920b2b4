"""Errors that reach users: each prints as one line naming the file and what to do."""

from __future__ import annotations


class CassetteError(Exception):
    """A cassette (or a file beside it, or mitmproxy's CA folder) that cannot be read or
    written: `path:line: problem`."""

    def __init__(self, path: str, problem: str, line: int | None = None):
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {problem}")
