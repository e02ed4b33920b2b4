"""Answering flows from cassettes: a hit is served as recorded, a miss gets an error that says
which cassette was searched and how the nearest recording differs."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from mitmproxy import http

from . import filters, paced
from .cassette import Interaction
from .matchers import IncomingRequest, Matcher
from .replay import Plan, ReplayCassette, make_plan
from .request_view import RequestView
from .timing import is_aws_event_stream
from .responses import flow_error

FAULT_HEADER = "X-Vcr-Fault"
PARTIAL_HEADER = "X-Vcr-Partial"  # on a recorded stream the upstream cut off mid-way
SOURCE_HEADER = "X-Vcr-Proxy"  # "replayed <cassette>#<id>" / "recorded ...": never on disk

log = logging.getLogger("vcr-proxy")


def incoming_request(view: RequestView, header_policy: str | None) -> IncomingRequest:
    """The request as a recording of it holds it (request_view.py: credentials scrubbed the
    same way, the body decoded), with the headers `header_policy` records (None: none, when
    headers are not matched)."""
    headers = {}
    if header_policy is not None:
        for name, value in filters.request_headers(view.headers, header_policy):
            headers.setdefault(name, []).append(value)
    return IncomingRequest(view.method, view.url, view.body, headers)


@dataclass
class Fault:
    """A failure to inject instead of (or into) a replayed answer: `status=429;retry-after=2`,
    `status=500`, `disconnect-after-events=3`, `delay=1.5`; `times=N` limits a test-wide fault
    to the first N requests."""

    text: str
    status: int | None = None
    retry_after: str | None = None
    disconnect_after_events: int | None = None
    delay: float = 0.0
    times: int | None = None

    def take(self) -> bool:
        """Whether this fault applies to one more request (and count it)."""
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


def parse_fault(text: str) -> Fault:
    """ValueError names what is wrong with `text`."""
    fault = Fault(text)
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, equals, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        try:
            if not equals:
                raise ValueError
            if key == "status":
                fault.status = int(value)
                if not 100 <= fault.status <= 599:
                    raise ValueError
            elif key == "retry-after":
                fault.retry_after = value
            elif key == "disconnect-after-events":
                fault.disconnect_after_events = int(value)
                if fault.disconnect_after_events < 0:
                    raise ValueError
            elif key == "delay":
                fault.delay = float(value)
                if not 0 <= fault.delay < 3600:
                    raise ValueError
            elif key == "times":
                fault.times = int(value)
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(f"unknown fault {key!r}; use status, retry-after, "
                             "disconnect-after-events, delay or times") from None
        except ValueError:
            raise ValueError(f"fault {item!r}: not a valid value") from None
    if fault.status is None and fault.disconnect_after_events is None and not fault.delay:
        raise ValueError(f"fault {text!r} does nothing; e.g. status=429;retry-after=2, "
                         "disconnect-after-events=3 or delay=1.5")
    return fault


def active_fault(flow: http.HTTPFlow) -> Fault | None:
    """The fault for this flow (its X-Vcr-Fault header, else the test's), if one applies."""
    fault = flow.metadata.get("vcr_fault")
    if fault is None or not fault.take():
        return None
    return fault


class Player:
    """Serves interactions: in one piece, or a piece at a time (paced.py) when the recorded
    pacing must be kept."""

    def __init__(self) -> None:
        paced.install()

    def serve(self, flow: http.HTTPFlow, replay: ReplayCassette, interaction: Interaction,
              timing: str, speed: float, fault: Fault | None = None):
        response = interaction.response
        headers = [(name, value) for name, values in response.headers.items() for value in values
                   if name.lower() not in ("content-length", "transfer-encoding")]
        partial = any(name.lower() == PARTIAL_HEADER.lower() for name, _ in headers)
        headers.append((SOURCE_HEADER, f"replayed {replay.path}#{interaction.id}"))
        plan = make_plan(interaction, replay.timing_for(interaction), timing, speed,
                         flow.request.timestamp_start, headers)
        flow.metadata["vcr_replay"] = True
        if partial:
            plan.cut = True  # the recording ends where the upstream cut it: so does the replay
        if fault is not None:
            plan.headers_at += fault.delay
            plan.chunk_at = [at + fault.delay for at in plan.chunk_at]
            if fault.disconnect_after_events is not None:
                plan.chunks = plan.chunks[:fault.disconnect_after_events]
                plan.chunk_at = plan.chunk_at[:fault.disconnect_after_events]
                plan.cut = True
        streamed = any(name.lower() == "content-type" and ("text/event-stream" in value.lower()
                                                           or is_aws_event_stream(value))
                       for name, value in headers)
        if response.trailer and flow.request.http_version == "HTTP/2.0" and not plan.cut:
            # HTTP/2 carries trailers after any body (gRPC's Grpc-Status), paced or not; HTTP/1.1
            # only in chunked bodies, which mitmproxy sends none with.
            plan.trailers = [(name, value) for name, values in response.trailer.items() for value in values]
        if plan.cut or (streamed and timing != "none"):
            paced.pace(flow, plan)
            return None
        wait = plan.started + plan.headers_at - time.time()
        if wait > 0:
            return self._respond_later(flow, plan, wait)
        respond(flow, plan)
        return None

    @staticmethod
    async def _respond_later(flow: http.HTTPFlow, plan: Plan, wait: float) -> None:
        await asyncio.sleep(wait)
        respond(flow, plan)

    @staticmethod
    def fail(flow: http.HTTPFlow, fault: Fault):
        """Answer with the fault's status instead of a recording (after its delay)."""
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        message = f"vcr-proxy: injected fault ({fault.text})"
        if not fault.delay:
            flow.response = flow_error(flow, fault.status, message, headers)
            return None

        async def later() -> None:
            await asyncio.sleep(fault.delay)
            flow.response = flow_error(flow, fault.status, message, headers)
        return later()

    @staticmethod
    def miss(flow: http.HTTPFlow, replay: ReplayCassette, matcher: Matcher,
             incoming: IncomingRequest, matched: int) -> str:
        """Answer a request no recording matches; the request line, for the session's report."""
        request = f"{incoming.method} {incoming.url}"
        if replay.cassette is None and replay.error is not None:
            detail = f"cassette {replay.error}"
        elif replay.cassette is None:
            detail = (f"cassette {replay.path} does not exist; record it with vcr_mode=once or "
                      "record")
        elif matched:
            detail = (f"{matched} interaction(s) of {replay.path} match, all already replayed; "
                      "set vcr_allow_repeats=true to serve the last again")
        else:
            count = len(replay.cassette.interactions)
            nearest = matcher.nearest(replay.cassette.interactions, incoming)
            detail = f"no match among {count} interaction(s) of {replay.path}"
            if nearest:
                found, differences = nearest
                detail += (f"; nearest is #{found.id} ({found.request.method} "
                           f"{matcher.shown_url(found.request.url)}): " + "; ".join(differences))
        message = f"vcr-proxy: {request}: {detail}"
        log.error(message)
        flow.response = flow_error(flow, 404, message)
        flow.metadata["vcr_miss"] = message
        return request


def respond(flow: http.HTTPFlow, plan: Plan) -> None:
    fields = [(name.encode("utf-8"), value.encode("utf-8")) for name, value in plan.headers]
    # The body as it goes out (replay.wire_body: compressed as its Content-Encoding says), set as
    # is: what Response.make does for a body without a content coding, in one step (make's
    # content setter was a tenth of the time the addon takes per replayed request).
    body = b"".join(plan.chunks)
    if not plan.trailers:  # a body with trailers ends at its stream's end, as gRPC's do
        fields.append((b"content-length", str(len(body)).encode()))
    now = time.time()
    flow.response = http.Response(b"HTTP/1.1", plan.status, b"", http.Headers(fields), body,
                                  None, now, now)
    flow.response.reason = plan.reason
    if plan.trailers:
        # HTTP/2 field names are lower case (a recording holds Go's canonical ones).
        flow.response.trailers = http.Headers([(n.lower().encode(), v.encode()) for n, v in plan.trailers])
