"""The proxy's own answers: JSON bodies, and errors in the shape SDKs show."""

from __future__ import annotations

import json

from mitmproxy import http


def json_response(status: int, payload: dict) -> http.Response:
    return http.Response.make(status, json.dumps(payload), {"Content-Type": "application/json"})


def error_response(status: int, message: str) -> http.Response:
    """An error in the OpenAI shape, so an SDK's exception shows the message."""
    return json_response(status, {"error": {"message": message, "type": "vcr_proxy_error",
                                            "code": status}})
