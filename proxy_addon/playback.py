"""Answering flows from cassettes: a hit is served as recorded, a miss gets an error that says
which cassette was searched and how the nearest recording differs."""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import connection, http

from .cassette import Interaction
from .credentials import scrub_request
from .matchers import IncomingRequest, Matcher
from .replay import Plan, ReplayCassette, ReplayServer, make_plan
from .responses import error_response

log = logging.getLogger("vcr-proxy")


def incoming_request(flow: http.HTTPFlow, with_headers: bool) -> IncomingRequest:
    """The request as a recording of it holds it: credentials scrubbed the same way."""
    request = flow.request
    headers = request.headers
    url, body, _ = scrub_request(request.pretty_url, headers.items(multi=True),
                                 request.raw_content or b"", headers.get("content-type", ""))
    return IncomingRequest(request.method, url, body,
                           {k: headers.get_all(k) for k in headers} if with_headers else {})


class Player:
    """Serves interactions: in one piece, or through the in-process replay server when the
    recorded pacing must be kept."""

    def __init__(self) -> None:
        self.server = ReplayServer()

    def serve(self, flow: http.HTTPFlow, replay: ReplayCassette, interaction: Interaction,
              timing: str, speed: float):
        response = interaction.response
        headers = [(name, value) for name, values in response.headers.items() for value in values
                   if name.lower() not in ("content-length", "transfer-encoding")]
        plan = make_plan(interaction, replay.timing_for(interaction), timing, speed,
                         flow.request.timestamp_start, headers)
        flow.metadata["vcr_replay"] = True
        streamed = any(name.lower() == "content-type" and "text/event-stream" in value.lower()
                       for name, value in headers)
        if streamed and timing != "none":
            self._through_server(flow, plan)
            return None
        if response.trailer and flow.request.http_version == "HTTP/2.0":
            # HTTP/2 carries trailers after any body (gRPC's Grpc-Status); HTTP/1.1 only in
            # chunked bodies, which a whole recorded body is not sent as.
            plan.trailers = [(name, value) for name, values in response.trailer.items() for value in values]
        wait = plan.started + plan.headers_at - time.time()
        if wait > 0:
            return self._respond_later(flow, plan, wait)
        respond(flow, plan)
        return None

    def _through_server(self, flow: http.HTTPFlow, plan: Plan) -> None:
        # mitmproxy sends an addon's response in one piece: a paced stream comes from the
        # in-process server instead, so gaps between events stay gaps. The connection is a new
        # one with no `via`, so an upstream proxy (mode=upstream:...) never sees it.
        request = flow.request
        request.scheme, request.host, request.port = "http", "127.0.0.1", self.server.port
        request.path = self.server.add(plan)
        request.method = "GET"
        request.content = b""
        flow.server_conn = connection.Server(address=("127.0.0.1", self.server.port))

    @staticmethod
    async def _respond_later(flow: http.HTTPFlow, plan: Plan, wait: float) -> None:
        await asyncio.sleep(wait)
        respond(flow, plan)

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
        flow.response = error_response(404, message)
        return request


def respond(flow: http.HTTPFlow, plan: Plan) -> None:
    fields = [(name.encode("utf-8"), value.encode("utf-8")) for name, value in plan.headers]
    body = b"".join(plan.chunks)
    if any(name.lower() == b"content-encoding" for name, _ in fields):
        # mitmproxy encodes the recorded (decoded) body as the header says.
        flow.response = http.Response.make(plan.status, body, http.Headers(fields))
    else:
        # What Response.make does for a body without a content coding, in one step (make's
        # content setter was a tenth of the time the addon takes per replayed request).
        if not plan.trailers:  # a body with trailers ends at its stream's end, as gRPC's do
            fields.append((b"content-length", str(len(body)).encode()))
        now = time.time()
        flow.response = http.Response(b"HTTP/1.1", plan.status, b"", http.Headers(fields), body,
                                      None, now, now)
    flow.response.reason = plan.reason
    if plan.trailers:
        # HTTP/2 field names are lower case (a recording holds Go's canonical ones).
        flow.response.trailers = http.Headers([(n.lower().encode(), v.encode()) for n, v in plan.trailers])
