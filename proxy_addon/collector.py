"""Python's garbage collector, kept from pausing replay.

A full collection walks every object the process holds: mitmproxy's, and every cassette
loaded (50,000 interactions are millions of objects). It ran every few seconds under load and
paused the event loop 25-85 ms each time: the tail of a timed replay's lateness. What the proxy
holds for its life (its own modules, loaded cassettes) is moved out of the collector's sight
once it is in place, and collections of young objects are made rarer; reference counting frees
nearly everything a request makes as soon as it is done anyway.
"""

from __future__ import annotations

import gc

def settle() -> None:
    """Everything alive now is long-lived: out of every later collection's walk."""
    gc.freeze()


_TRIM_FROM = 8 << 20  # a body this large leaves the allocator's heaps worth giving back
_libc = None


def give_back(size: int) -> None:
    """After a body of `size` bytes is done with: glibc keeps freed memory of its heaps for
    reuse rather than return it, so ten 100 MB bodies left a gigabyte held. malloc_trim hands
    the free pages back (a few ms; nothing else on Linux with glibc)."""
    global _libc
    if size < _TRIM_FROM:
        return
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = (ctypes.c_size_t,)
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)
