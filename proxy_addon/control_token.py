"""The secret every HTTP control request carries: `X-Vcr-Control: <token>`.

Any local user can connect to the proxy's port, and so reach http://vcr-proxy.control/ through
it: the endpoint answers only requests that carry a token its owner alone can read. The token is
given to the proxy (the option `vcr_control_token`, else the variable VCR_PROXY_CONTROL_TOKEN),
or kept in <confdir>/vcr-proxy-control-token, beside mitmproxy's CA key: made on first use,
mode 0600, and refused if anyone else could have read or replaced it. `vcr-proxy env` exports
the same token as VCR_PROXY_CONTROL_TOKEN.

Plain Python: the addon and the command line read the token here; control.py compares it.
"""

from __future__ import annotations

import errno
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

TOKEN_FILE = "vcr-proxy-control-token"
TOKEN_VARIABLE = "VCR_PROXY_CONTROL_TOKEN"
MIN_LENGTH = 16
_EXAMPLE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class TokenError(ValueError):
    """A token that cannot be used; its text is one line saying what to do."""


def token_path(confdir: Path) -> Path:
    return Path(confdir).expanduser() / TOKEN_FILE


def check_token(token: str, source: str) -> str:
    """`token` if it can be used; TokenError names `source` (never the token) otherwise."""
    if len(token) < MIN_LENGTH:
        raise TokenError(f"{source}: a token of {len(token)} characters is too easy to guess; "
                         f"give {MIN_LENGTH} or more, e.g. from {_EXAMPLE}")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise TokenError(f"{source}: the token travels in an HTTP header: printable ASCII "
                         "without spaces only")
    return token


def chosen_token(option: str = "") -> tuple[str, str] | None:
    """The token given explicitly (the option's value, else VCR_PROXY_CONTROL_TOKEN) and where
    it came from; None if neither gives one."""
    if option:
        return check_token(option, "vcr_control_token"), "vcr_control_token"
    variable = os.environ.get(TOKEN_VARIABLE, "")
    if variable:
        return check_token(variable, TOKEN_VARIABLE), TOKEN_VARIABLE
    return None


def load_token(confdir: Path) -> str:
    """The token kept in `confdir`, made there (the folder too, mode 0700) if missing."""
    path = token_path(confdir)
    for _ in range(3):
        try:
            return _read(path)
        except FileNotFoundError:
            _create(path)  # or another process makes it first: then its token is read
    raise TokenError(f"{path}: could not be made; give a token in {TOKEN_VARIABLE} instead")


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written whole under a name of its own (mkstemp: O_EXCL, mode 0600), then linked into place:
    # no reader ever sees half a token, and link() neither follows nor replaces whatever
    # (a symlink, another process's token) took the name meanwhile.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{TOKEN_FILE}.", dir=path.parent)
    try:
        try:
            os.write(descriptor, (secrets.token_urlsafe(32) + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


def _read(path: Path) -> str:
    remove = "remove it, and a new token is made"
    try:
        # O_NOFOLLOW: a symlink planted there is refused, not followed; O_NONBLOCK: a FIFO must
        # not hang the proxy.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise TokenError(f"{path} is a symbolic link; the token must be a file of its own: "
                             f"{remove}") from None
        if error.errno == errno.ENOENT:
            raise
        raise TokenError(f"{path}: cannot read it ({error.strerror})") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise TokenError(f"{path} is not a regular file: {remove}")
        if status.st_uid != os.geteuid():
            raise TokenError(f"{path} belongs to uid {status.st_uid}, not to this user "
                             f"(uid {os.geteuid()}), who may have chosen it: {remove}")
        if status.st_mode & 0o077:
            raise TokenError(f"{path} can be read or written by other users (mode "
                             f"{stat.S_IMODE(status.st_mode):04o}): {remove} (the old one was "
                             "exposed)")
        data = os.read(descriptor, 4096)
    finally:
        os.close(descriptor)
    return check_token(data.decode("ascii", "replace").strip(), str(path))


def token_matches(sent: str | None, token: str) -> bool:
    """Whether a request's header value is the token, compared in constant time."""
    if sent is None:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), token.encode("ascii"))
