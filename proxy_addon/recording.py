"""Recording flows: a stream passes through live while a copy is kept, and each completed
exchange is scrubbed of credentials and appended to its cassette."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from pathlib import Path
from urllib.parse import urlsplit

from mitmproxy import http

from . import collector
from .credentials import Secrets, scrub_line
from .errors import CassetteError
from .persisters.filesystem import CassetteWriter
from .recorder import (BodyTooLarge, DecodeError, Exchange, PendingRecording, stream_is_finished,
                       to_interaction)
from .request_view import RequestView
from .serializers.emitter import Layout

log = logging.getLogger("vcr-proxy")


class Recorder:
    """One writer per cassette, and the recordings still in flight."""

    def __init__(self, on_saved=lambda interaction_id: None, on_failed=lambda message: None) -> None:
        self.writers: dict[Path, CassetteWriter] = {}
        self._opening: dict[Path, asyncio.Lock] = {}
        self.in_flight: set[int] = set()  # id() of recordings not yet saved or dropped
        self._saving: set[asyncio.Task] = set()
        self.failures: list[str] = []  # every interaction that could not be saved, this run
        self.on_saved, self.on_failed = on_saved, on_failed

    def forget(self, path: Path | None = None) -> None:
        """Drop the writer of `path` (all writers if None): the next recording opens it anew."""
        if path is None:
            self.writers.clear()
        else:
            self.writers.pop(path, None)

    async def writer(self, path: Path, layout: Layout, fresh: bool) -> CassetteWriter:
        writer = self.writers.get(path)
        if writer is None:
            async with self._opening.setdefault(path, asyncio.Lock()):
                writer = self.writers.get(path)
                if writer is None:
                    writer = await asyncio.to_thread(CassetteWriter, path, layout, fresh)
                    self.writers[path] = writer
        return writer

    def begin(self, flow: http.HTTPFlow, view: RequestView | Future, writer: CassetteWriter,
              upstream: str, max_body: int) -> None:
        """Record `flow`, whose request is saved as `view` (request_view.py) holds it: the view,
        or the future of one still being made in a thread (the hooks that need it wait)."""
        later = view if isinstance(view, Future) else None
        recording = PendingRecording(writer=writer, id=writer.reserve_id(),
                                     url=flow.request.pretty_url if later else view.url,
                                     started=flow.request.timestamp_start, limit=max_body,
                                     view=None if later else view, view_later=later)
        flow.metadata["vcr"] = recording
        self.in_flight.add(id(recording))
        if upstream:
            reroute(flow, upstream)

    def drop(self, flow: http.HTTPFlow) -> bool:
        """Give back the recording begun for `flow`, which will not be forwarded after all (the
        direct front's: it forwards nothing); whether there was one."""
        recording: PendingRecording | None = flow.metadata.pop("vcr", None)
        if recording is None:
            return False
        recording.writer.release_id(recording.id)
        recording.discard()
        self.in_flight.discard(id(recording))
        return True

    @staticmethod
    def responseheaders(flow: http.HTTPFlow) -> None:
        recording: PendingRecording | None = flow.metadata.get("vcr")
        if recording is None:
            return
        headers = flow.response.headers
        # For the client only: filters.py keeps it out of the cassette.
        headers["X-Vcr-Proxy"] = f"recorded {recording.writer.path}#{recording.id}"
        if ("text/event-stream" in headers.get("content-type", "").lower()
                or "content-length" not in headers
                or "chunked" in headers.get("transfer-encoding", "").lower()):
            recording.streamed = True
            flow.response.stream = recording.on_chunk

    def response(self, flow: http.HTTPFlow, header_policy: str) -> None:
        """Save a completed exchange, after the client has its answer: the write runs in the
        background, so a slow disk or a large decode delays no client."""
        recording: PendingRecording | None = flow.metadata.pop("vcr", None)
        if recording is not None and self._made(flow, recording):
            self._save_later(flow, recording, header_policy)

    def _made(self, flow: http.HTTPFlow, recording: PendingRecording) -> bool:
        """Whether the recording's view is made, waiting for its thread if it is still at it (the
        addon waits first, off the loop); if it could not be made, the exchange is not recorded."""
        if recording.view is None:
            try:
                recording.view = recording.view_later.result()
            except Exception as error:  # a bug: said, never recorded unscrubbed
                log.exception("vcr-proxy: internal error while scrubbing")
                self._failed(recording, f"{flow.request.method} {scrub_line(recording.url)}",
                             RuntimeError(f"internal error {error!r}"), None)
                recording.discard()
                self.in_flight.discard(id(recording))
                return False
            recording.url = recording.view.url  # scrubbed, where it was as sent
        return True

    def error(self, flow: http.HTTPFlow, header_policy: str) -> None:
        recording: PendingRecording | None = flow.metadata.pop("vcr", None)
        if recording is None or not self._made(flow, recording):
            return
        if recording.streamed and (recording.ended is not None or stream_is_finished(recording.copy)):
            # The answer is whole: the client hung up as it ended (SDKs close a stream once
            # they have read its final event), which changes nothing worth recording.
            if recording.ended is None:
                recording.ended = recording.arrivals[-1][1]
            self._save_later(flow, recording, header_policy)
            return
        shown = self._shown(flow, recording)
        if recording.over_limit:
            try:
                recording.body()
            except BodyTooLarge as error:
                self._failed(recording, shown, error, None)
        else:
            reason = flow.error.msg if flow.error else "unknown error"
            if (recording.streamed and recording.copy and flow.response is not None
                    and "client" not in reason.lower()):
                # The upstream cut the stream off: keep what came, marked, to replay the cut.
                recording.ended = recording.arrivals[-1][1] if recording.arrivals else time.time()
                log.warning(f"vcr-proxy: recorded as partial: {shown}: the stream was cut off "
                            f"({scrub_line(reason, recording.view.secrets)})")
                self._save_later(flow, recording, header_policy, partial=True)
                return
            log.warning(f"vcr-proxy: not recorded: {shown}: the exchange did not complete "
                        f"({scrub_line(reason, recording.view.secrets)})")
            recording.writer.release_id(recording.id)
        # Released now, not when the garbage collector breaks the flow's reference cycles.
        recording.discard()
        self.in_flight.discard(id(recording))

    def _failed(self, recording: PendingRecording, shown: str, error: Exception,
                secrets: Secrets | None) -> None:
        message = f"{shown}: {scrub_line(str(error), secrets)}"
        log.error(f"vcr-proxy: not recorded: {message}")
        recording.writer.release_id(recording.id)
        self.failures.append(message)
        self.on_failed(message)

    async def settle(self, timeout: float) -> None:
        """Wait (up to `timeout`) until no recorded exchange is still in flight."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    @staticmethod
    def _shown(flow: http.HTTPFlow, recording: PendingRecording) -> str:
        return f"{flow.request.method} {scrub_line(recording.url, recording.view.secrets)}"

    def _save_later(self, flow: http.HTTPFlow, recording: PendingRecording, header_policy: str,
                    partial: bool = False) -> None:
        # The flow is read now: once the hook returns, mitmproxy (and hide_credentials) change it.
        response = flow.response
        streamed = recording.streamed
        shown = self._shown(flow, recording)
        try:
            body = recording.body() if streamed else (response.raw_content or b"")
        except DecodeError as error:  # over vcr_max_body
            self._failed(recording, shown, error, recording.view.secrets)
            recording.discard()
            self.in_flight.discard(id(recording))
            return
        ended = recording.ended if streamed else (response.timestamp_end or time.time())
        view = recording.view
        exchange = Exchange(
            method=view.method, url=view.url, request_headers=view.headers, request_body=view.body,
            http_version=response.http_version, status_code=response.status_code,
            reason=response.reason, response_headers=list(response.headers.items(multi=True)),
            response_body=body, started=recording.started,
            headers_at=response.timestamp_start or recording.started, ended=ended,
            arrivals=recording.arrivals if streamed else [(len(body), ended)],
            trailers=list(response.trailers.items(multi=True)) if response.trailers else [],
            secrets=view.secrets, request_scrubbed_of=view.scrubbed_of,
        )
        # Interactions are built in parallel threads, and appended in the order the exchanges
        # ended (go-vcr replays identical requests in file order), not in the order their
        # threads happen to finish. A save cancelled before its thread ran gives its turn up.
        turn = recording.writer.take_turn()
        task = asyncio.create_task(self._save(exchange, recording, header_policy, shown,
                                              recording.view.secrets, partial, turn))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)
        task.add_done_callback(lambda done: done.cancelled() and recording.writer.end_turn(turn))

    async def _save(self, exchange: Exchange, recording: PendingRecording, header_policy: str,
                    shown: str, secrets: Secrets | None, partial: bool, turn: int) -> None:
        # What the save went through, to give back: the bodies, and what a coded response
        # decoded to (a gzip bomb refused at vcr_max_body decoded that much first).
        handled = len(exchange.request_body) + len(exchange.response_body)
        try:
            interaction, timing, written = await asyncio.to_thread(
                self._write, exchange, recording, header_policy, partial, turn)
            if interaction.response.uncompressed:
                handled += len(interaction.response.body)
        except (DecodeError, CassetteError, OSError) as error:
            if isinstance(error, BodyTooLarge):
                handled += recording.limit
            self._failed(recording, shown, error, secrets)
            return
        except Exception as error:  # a bug must not pass silently as a recording
            log.exception("vcr-proxy: internal error while saving")
            self._failed(recording, shown, RuntimeError(f"internal error {error!r}"), secrets)
            return
        finally:
            recording.discard()
            self.in_flight.discard(id(recording))
            collector.give_back(handled, recording)
        events = f", {len(timing.events_ms)} events" if recording.streamed else ""
        log.info(f"recorded {exchange.method} {interaction.request.url} -> "
                 f"{interaction.response.code} in {interaction.response.duration / 1e9:.3f}s"
                 f"{events} -> {recording.writer.path}#{written}")
        self.on_saved(written)

    @staticmethod
    def _write(exchange: Exchange, recording: PendingRecording, header_policy: str, partial: bool,
               turn: int):
        try:
            interaction, timing = to_interaction(exchange, recording.id, header_policy,
                                                 recording.limit)
        except BaseException:
            recording.writer.end_turn(turn)
            raise
        if partial:  # a response header, which go-vcr loads and keeps (playback.py)
            interaction.response.headers["X-Vcr-Partial"] = ["true"]
        written = recording.writer.append(interaction, timing, turn)
        return interaction, timing, written


def reroute(flow: http.HTTPFlow, upstream: str) -> None:
    """Send the request to `upstream` (a base URL); the recording keeps the public URL."""
    parts = urlsplit(upstream)
    prefix = parts.path.rstrip("/")
    flow.request.scheme = parts.scheme
    flow.request.host = parts.hostname
    flow.request.port = parts.port or (443 if parts.scheme == "https" else 80)
    if prefix:
        flow.request.path = prefix + flow.request.path
