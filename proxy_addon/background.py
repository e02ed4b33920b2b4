"""Work done off the event loop that a stop need not wait for.

asyncio.to_thread runs work on the loop's executor, whose threads Python joins at exit: a
SIGTERM while a 50,000-interaction cassette loads (or a 200 MB body is matched) waited until
that was done, 16 s and more. What only reads (loading a cassette, scrubbing and matching a
request) runs here instead, on a daemon thread that exit does not wait for. Writing a cassette
stays on the executor: a completed interaction is on disk before the proxy exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading


async def read_off_loop(function, *args):
    """`function(*args)` on a daemon thread; its result, or what it raised."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(outcome, error) -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outcome)

    def run() -> None:
        try:
            outcome, error = function(*args), None
        except BaseException as raised:  # handed to the awaiting task, as to_thread does
            outcome, error = None, raised
        try:
            loop.call_soon_threadsafe(settle, outcome, error)
        except RuntimeError:  # the loop is closed: the proxy is stopping, nobody waits
            pass

    threading.Thread(target=run, name="vcr-proxy reader", daemon=True).start()
    return await future


def start_off_loop(function, *args) -> concurrent.futures.Future:
    """`function(*args)` on a daemon thread, started now and not waited for: its future (await
    it with asyncio.wrap_future; `result()` waits for it from any thread)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as raised:  # handed to whoever asks for the result
            future.set_exception(raised)

    threading.Thread(target=run, name="vcr-proxy reader", daemon=True).start()
    return future
