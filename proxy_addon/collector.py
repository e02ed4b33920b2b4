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
