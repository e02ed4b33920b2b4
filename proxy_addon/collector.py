"""Python's garbage collector, kept from pausing replay.

A full collection walks every object the process holds: mitmproxy's, and every cassette
loaded (50,000 interactions are millions of objects). It ran every few seconds under load and
paused the event loop 25-85 ms each time: the tail of a timed replay's lateness. What the proxy
holds for its life (its own modules, loaded cassettes) is moved out of the collector's sight
once it is in place, and collections of young objects are made rarer; reference counting frees
nearly everything a request makes as soon as it is done anyway.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

def settle() -> None:
    """Everything alive now is long-lived: out of every later collection's walk. Garbage not
    yet collected is collected first: frozen, a dead flow's cycles would be kept for good, one
    more set at each cassette a test run loads."""
    gc.collect()
    gc.freeze()


_TRIM_FROM = 8 << 20  # a body this large leaves the allocator's heaps worth giving back
_RETRIES = (0.05, 0.2, 1.0, 5.0)  # seconds after which a holder still alive is looked at again
_libc = None
_holders: list[weakref.ref] = []  # what held big bodies, done with, not yet freed
_pending: asyncio.TimerHandle | asyncio.Handle | None = None


def give_back(size: int, holder: object | None = None) -> None:
    """After a body of `size` bytes is done with, and `holder` (the flow or recording that held
    it) with it: the memory is handed back to the system once `holder` is freed.

    mitmproxy's objects of a flow are reference cycles (an HTTP stream holds its state as its own
    bound method; a caught exception's traceback holds the frames, with their locals, of the
    layers it passed), so a flow's bodies are freed only when the cyclic collector runs. It runs
    after so many objects are made, not so many bytes: a few requests with bodies of 50 MB make
    few objects, and six of them were all held at once, 290 MB. So the collector runs here,
    soon after (on the event loop, once the flow is let go of: a full collection of what is not
    frozen, 0.2 ms while recording), and again a little later while `holder` lives on. Then glibc,
    which keeps freed memory of its heaps for reuse, hands the free pages back (malloc_trim)."""
    global _pending
    if size < _TRIM_FROM:
        return
    if holder is not None:
        _holders.append(weakref.ref(holder))
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop: nothing else holds on to it here
        _reclaim(None, 0)
        return
    if _pending is not None:  # a later look at an earlier holder: this one comes first
        _pending.cancel()
    _pending = loop.call_soon(_reclaim, loop, 0)


def _reclaim(loop: asyncio.AbstractEventLoop | None, attempt: int) -> None:
    global _pending
    _pending = None
    gc.collect()
    _holders[:] = [holder for holder in _holders if holder() is not None]
    _trim()
    if _holders and loop is not None:
        if attempt < len(_RETRIES):
            _pending = loop.call_later(_RETRIES[attempt], _reclaim, loop, attempt + 1)
        else:  # kept alive for good (mitmweb's list of flows): not waited for any longer
            _holders.clear()


def _trim() -> None:
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = (ctypes.c_size_t,)
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)
