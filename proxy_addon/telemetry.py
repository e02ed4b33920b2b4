"""Requests that SDKs send on their own: traces, run logs. They are never part of a test.

The OpenAI Agents SDK posts its traces to `/v1/traces/ingest` from a background thread, with
random trace and span ids; LangSmith and Langfuse ingest runs the same way. Recorded, such a
request could never match again (its ids change every run), and flushed in the middle of a test
it would land in that test's cassette and miss on replay: a flaky failure that says nothing
about the code under test. So they are never recorded, and where the proxy answers from
cassettes it answers them itself with a success the SDK accepts. When the proxy records, they
reach their service as they would without it.

The list is `vcr_telemetry`: `host/path` patterns (`*` in a host is one label, a leading `*.`
one or more; `*` in a path is anything), `+host/path` adds to the defaults, `none` turns it off.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from .routing import HostPatterns

# (host pattern, path pattern, who sends it)
DEFAULT_ENDPOINTS = (
    ("api.openai.com", "/v1/traces/ingest", "the OpenAI Agents SDK's tracing"),
    ("api.smith.langchain.com", "/runs*", "LangSmith's run ingestion"),
    ("api.smith.langchain.com", "/api/v1/runs*", "LangSmith's run ingestion"),
    ("api.smith.langchain.com", "/info", "LangSmith's client start-up"),
    ("eu.api.smith.langchain.com", "/runs*", "LangSmith's run ingestion (EU)"),
    ("eu.api.smith.langchain.com", "/info", "LangSmith's client start-up (EU)"),
    ("*.langfuse.com", "/api/public/ingestion", "Langfuse's ingestion"),
    ("*.langfuse.com", "/api/public/otel/*", "Langfuse's OpenTelemetry endpoint"),
    # Fetched at most once a day (cached in HF_HOME) to name the calling agent in its
    # User-Agent: in a cassette recorded on a machine whose cache was stale, replay elsewhere
    # would find it unused; recorded where the cache was fresh, replay elsewhere would miss it.
    ("huggingface.co", "/api/agent-harnesses", "huggingface_hub's agent-harness registry"),
)


@dataclass(frozen=True)
class Endpoint:
    hosts: HostPatterns
    path: str
    sender: str

    def matches(self, host: str, path: str) -> bool:
        return fnmatch.fnmatchcase(_spelled(path), self.path) and self.hosts.matches(host)


def _spelled(path: str) -> str:
    """A request path as the endpoints are written: no query, no doubled slashes (a base URL
    joined to a path), no trailing slash; servers read `/v1/traces/ingest/` as the same."""
    path = re.sub(r"/{2,}", "/", path.split("?", 1)[0].split("#", 1)[0])
    return path.rstrip("/") or "/"


def parse_endpoints(value: str) -> tuple[Endpoint, ...]:
    """The endpoints of a `vcr_telemetry` value; ValueError names an entry that is no
    `host/path`."""
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if entries == ["none"]:
        return ()
    found = list(DEFAULT_ENDPOINTS) if all(entry.startswith("+") for entry in entries) else []
    for entry in entries:
        host, slash, path = entry.lstrip("+").partition("/")
        if not host or not slash:
            raise ValueError(f"{entry!r} is not host/path, like +telemetry.example.com/v1/traces")
        found.append((host, "/" + path, "vcr_telemetry"))
    return tuple(Endpoint(HostPatterns([host]), path, sender) for host, path, sender in found)


def telemetry_endpoint(endpoints: tuple[Endpoint, ...], host: str, path: str) -> Endpoint | None:
    return next((endpoint for endpoint in endpoints if endpoint.matches(host, path)), None)
