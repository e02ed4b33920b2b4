"""The proxy's own answers: JSON bodies, and errors in the shape each provider's SDK shows."""

from __future__ import annotations

import json

from mitmproxy import http

# Google's status names and Anthropic's error types for the statuses the proxy answers with.
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# AWS's error codes (x-amzn-ErrorType) for the statuses the proxy answers with, as Bedrock names them.
AWS_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
             413: "ValidationException", 429: "ThrottlingException", 500: "InternalServerException",
             503: "ServiceUnavailableException"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def json_response(status: int, payload: dict, headers: dict[str, str] | None = None) -> http.Response:
    return http.Response.make(status, json.dumps(payload),
                              {"Content-Type": "application/json", **(headers or {})})


def provider(host: str, path: str) -> str:
    """Whose error shape a request to `host` `path` expects: aws, anthropic, google or openai."""
    host = host.lower().rstrip(".")
    if host.startswith("bedrock") and host.endswith(".amazonaws.com"):
        return "aws"  # Bedrock answers in AWS's shape whatever the model (boto3 reads `message`)
    if host == "api.anthropic.com" or "/publishers/anthropic/" in path:
        return "anthropic"
    if host == "generativelanguage.googleapis.com" or host.endswith("aiplatform.googleapis.com"):
        return "google"
    return "openai"


def error_payload(status: int, message: str, shape: str = "openai") -> dict:
    if shape == "aws":  # botocore and the AWS SDK for JavaScript read `message` (or `Message`)
        return {"message": message}
    if shape == "anthropic":
        return {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(status, "api_error"),
                                           "message": message}}
    if shape == "google":
        return {"error": {"code": status, "message": message,
                          "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}
    return {"error": {"message": message, "type": "vcr_proxy_error", "code": status}}


def error_response(status: int, message: str, shape: str = "openai",
                   headers: dict[str, str] | None = None) -> http.Response:
    """An error in the shape of `shape`'s API (OpenAI's by default), so an SDK's exception
    shows the message."""
    if shape == "aws":  # the error code, which AWS SDKs take from this header
        headers = {"x-amzn-ErrorType": AWS_TYPES.get(status, "InternalServerException"), **(headers or {})}
    return json_response(status, error_payload(status, message, shape), headers)


def flow_error(flow: http.HTTPFlow, status: int, message: str,
               headers: dict[str, str] | None = None) -> http.Response:
    """error_response in the shape the flow's host expects."""
    request = flow.request
    return error_response(status, message, provider(request.pretty_host, request.path), headers)
