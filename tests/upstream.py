"""A real local LLM-API-like upstream for the proxy tests: HTTPS with a self-signed certificate,
HTTP/1.1 or HTTP/2, Server-Sent Events sent with delays, a gzip JSON endpoint and errors.

It runs hypercorn in a thread of the test process, so a test can hold an event back until its
client has seen an earlier one.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import socket
import threading
import zlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

PUBLIC_HOSTS = ["openrouter.ai", "api.openai.com", "api.anthropic.com",
                "generativelanguage.googleapis.com"]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, localhost and the public API hosts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcr-proxy test upstream")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    names += [x509.DNSName(h) for h in PUBLIC_HOSTS]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "upstream-cert.pem", folder / "upstream-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chunk(delta: dict, finish: str | None = None) -> bytes:
    data = {"id": "gen-test-1", "object": "chat.completion.chunk", "created": 1758698524,
            "model": "moonshotai/kimi-k2-0905", "provider": "Test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


TOOL_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"role": "assistant", "content": "Checking"}),
    chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "functions.weather:0", "type": "function",
         "function": {"name": "weather", "arguments": ""}}]}),
    chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "function": {"arguments": "{\"location\":"}}]}),
    chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "function": {"arguments": "\"Florence, Italy\"}"}}]}),
    chunk({}, finish="tool_calls"),
    b"data: [DONE]\n\n",
]

ANTHROPIC_MESSAGE = {
    "id": "msg_test_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Ciao! 👋"}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 6},
}


def anthropic_event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


ANTHROPIC_STREAM = [
    anthropic_event("message_start", {"type": "message_start", "message": {
        **ANTHROPIC_MESSAGE, "content": [], "stop_reason": None,
        "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    anthropic_event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}}),
    anthropic_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "Ciao"}}),
    anthropic_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "! 👋"}}),
    anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
    anthropic_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                      "stop_sequence": None}, "usage": {"output_tokens": 6}}),
    anthropic_event("message_stop", {"type": "message_stop"}),
]

COMPLETION = {
    "id": "gen-test-2", "object": "chat.completion", "created": 1758698524,
    "model": "moonshotai/kimi-k2-0905",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Olá! 👋"}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
}


_BOMBS: dict[int, bytes] = {}


def aws_frame(event_type: str, payload: dict) -> bytes:
    """One AWS event-stream frame, as Bedrock sends it and botocore checks it: a prelude (total
    and header lengths, CRC32), string headers, the JSON payload, and a CRC32 of all before."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"),
                        (":message-type", "event")):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + len(value).to_bytes(2, "big") + value.encode()
    body = json.dumps(payload).encode()
    prelude = (12 + len(headers) + len(body) + 4).to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + headers + body
    return message + zlib.crc32(message).to_bytes(4, "big")


# A ConverseStream answer: "Hello there!" in two deltas, then its stop reason and usage.
BEDROCK_STREAM = [
    aws_frame("messageStart", {"role": "assistant"}),
    aws_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    aws_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " there!"}}),
    aws_frame("contentBlockStop", {"contentBlockIndex": 0}),
    aws_frame("messageStop", {"stopReason": "end_turn"}),
    aws_frame("metadata", {"usage": {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12},
                           "metrics": {"latencyMs": 250}}),
]


def _decoded(body: bytes, coding: str) -> bytes:
    """A request body as an API server reads it: Content-Encoding undone (SDK telemetry
    compresses what it sends)."""
    from proxy_addon.recorder import decode_body

    return bytes(decode_body(body, coding)) if coding else body


def _gzip_bomb(mebibytes: int) -> bytes:
    if mebibytes not in _BOMBS:
        import zlib

        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = bytes(1 << 20)
        _BOMBS[mebibytes] = b"".join([compressor.compress(zeros) for _ in range(mebibytes)]
                                     + [compressor.flush()])
    return _BOMBS[mebibytes]


class Gate:
    """A threading.Event that coroutines can also wait for, each woken once when it is set
    (hundreds of streams may wait at once)."""

    def __init__(self):
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def set(self) -> None:
        with self._lock:
            self._flag.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(True))

    def clear(self) -> None:
        self._flag.clear()

    def is_set(self) -> bool:
        return self._flag.is_set()

    async def opens(self, timeout: float) -> bool:
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._flag.is_set():
                return True
            self._waiters.append((asyncio.get_running_loop(), future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False


class Upstream:
    """The ASGI app and its server thread. `gate` holds event 3 of a chat stream requested
    with `"gated": true` back until a test sets it (or 60 s pass); `released_by_test` tells
    which."""

    def __init__(self, cert: Path, key: Path, http2: bool = True, event_delay: float = 0.05):
        self.port = free_port()
        self.http2 = http2
        self.event_delay = event_delay
        self.gate = Gate()
        self.released_by_test: bool | None = None
        self.requests: list[dict] = []
        self.event_sent_at: dict[int, float] = {}
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.certfile, config.keyfile = str(cert), str(key)
        config.alpn_protocols = ["h2", "http/1.1"] if http2 else ["http/1.1"]
        config.loglevel = "WARNING"
        config.accesslog = None
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "Upstream":
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("upstream did not start")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                threading.Event().wait(0.05)
        raise RuntimeError("upstream is not listening")

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.stopping = asyncio.Event()
        self.ready.set()
        self.loop.run_until_complete(serve(self.app, self.config, shutdown_trigger=self.stopping.wait))

    async def app(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self._websocket_echo(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await self.received(scope, receive)
        headers = self.requests[-1]["headers"]
        path = scope["path"]
        if path.endswith("/chat/completions"):
            request = json.loads(_decoded(body, headers.get("content-encoding", "")) or b"{}")
            if request.get("stream"):
                await self._stream(send, TOOL_STREAM, gated=request.get("gated", False))
            else:
                await self._json(send, 200, COMPLETION)
        elif path == "/v1/traces/ingest":  # the OpenAI Agents SDK's trace exporter
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path.endswith("/converse-stream"):  # Bedrock: AWS event-stream frames, paced
            await self._stream(send, BEDROCK_STREAM, content_type=b"application/vnd.amazon.eventstream")
        elif path == "/v1/messages":
            request = json.loads(body or b"{}")
            if request.get("stream"):
                await self._stream(send, ANTHROPIC_STREAM)
            else:
                await self._json(send, 200, ANTHROPIC_MESSAGE)
        elif path == "/gzip":
            data = gzip.compress(json.dumps(COMPLETION).encode())
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            extra = [(b"set-cookie", b"session=SECRET-COOKIE-VALUE")]
            if "no_retry" in scope["query_string"].decode():  # as OpenAI says of some 5xx
                extra.append((b"x-should-retry", b"false"))
            await self._json(send, code, {"error": {"message": f"status {code}", "code": code}},
                             extra=extra)
        elif path == "/echo":
            # Echoes the caller's credentials back, as error bodies and gateways do: in the
            # body, and each header value in a response header of its own.
            query = scope["query_string"].decode()
            status = 401 if "status=401" in query else 200
            payload = {"error": {"message": "Incorrect API key provided: "
                                 + headers.get("authorization", "(none)")},
                       "headers": headers, "query": query, "body": body.decode("utf-8", "replace")}
            extra = [(f"x-echo-{n}".encode(), value.encode()) for n, value in enumerate(headers.values())]
            await self._json(send, status, payload, extra=extra)
        elif path == "/bomb":  # gzip that decodes to `mb` MiB of zeros (1 MiB per ~1 KB sent)
            size = int(dict(p.split("=") for p in scope["query_string"].decode().split("&") if p).get("mb", 1024))
            data = _gzip_bomb(size)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
        elif path == "/trailers":  # gRPC-style: the status comes after the body
            await send({"type": "http.response.start", "status": 200, "trailers": True,
                        "headers": [(b"content-type", b"application/grpc")]})
            await send({"type": "http.response.body", "body": b"\x00\x00\x00\x00\x02hi"})
            await send({"type": "http.response.trailers", "headers": [
                (b"grpc-status", b"0"), (b"grpc-message", b"fine")]})
        elif path == "/hang":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            await asyncio.sleep(5)
            await send({"type": "http.response.body", "body": b"data: 2\n\n"})
        elif path == "/events":
            query = dict(p.split("=") for p in scope["query_string"].decode().split("&") if p)
            pad = "x" * int(query.get("pad", 0))
            events = [f"data: {{\"n\": {n}, \"pad\": \"{pad}\"}}\n\n".encode()
                      for n in range(int(query.get("n", 5)))]
            await self._stream(send, events)
        elif path == "/drop":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"),
                                    (b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            raise RuntimeError("upstream drops the stream on purpose")
        else:
            await self._json(send, 404, {"error": {"message": f"no route {path}"}})

    async def received(self, scope, receive) -> bytes:
        """The request's body, read whole; the request is logged in `requests`."""
        pieces = []  # joined once: a body of hundreds of MB arrives in many pieces
        while True:
            message = await receive()
            pieces.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(pieces)
        self.requests.append({"path": scope["path"], "query": scope["query_string"].decode(),
                              "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                              "body": body, "http_version": scope["http_version"]})
        return body

    @staticmethod
    async def _websocket_echo(receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": f"echo: {message.get('text')}"})
            else:
                return

    async def _json(self, send, status: int, payload: dict, extra=()) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            *extra]})
        await send({"type": "http.response.body", "body": data})

    async def _stream(self, send, events: list[bytes], gated: bool = False,
                      content_type: bytes = b"text/event-stream") -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"cache-control", b"no-cache")]})
        for number, event in enumerate(events):
            if gated and number == 2:
                self.released_by_test = await self.gate.opens(timeout=60)
            elif number:
                await asyncio.sleep(self.event_delay)
            self.event_sent_at[number] = asyncio.get_running_loop().time()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
