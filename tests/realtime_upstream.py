"""A real local wss:// upstream for the realtime tests (the `websockets` library's server, TLS
with the test certificate), speaking by path:

- `/v1/realtime`: OpenAI's Realtime protocol, text modality: `session.created` (with an
  ephemeral client secret, which must never reach a file), `session.updated`, items echoed
  as `conversation.item.created`, and on `response.create` either a function call (a user asks
  for the weather) or a text answer, each as timed deltas and a `response.done` with usage;
- `/ws/...BidiGenerateContent`: Gemini Live's shape: `setupComplete`, then for each
  `clientContent` turn the model's text in `serverContent` parts, `turnComplete`, usage; a
  turn asking for the weather in a session whose setup declared tools gets a `toolCall`
  instead, and the `toolResponse` to it a text answer; as binary frames holding JSON, as
  Google sends them;
- `/v1/audio`: binary PCM16 frames answered with a binary frame (the frame reversed) and a
  text acknowledgement;
- `/v1/echo`: every message sent back as it came (text as text, binary as binary), and the
  handshake's subprotocols offered as a first text message (`{"offered": [...]}`): an upstream
  that echoes what the client sent, credentials included;
- `/v1/refused`: the upgrade answered `401` with a JSON error body (no WebSocket).

It keeps what it saw: each handshake's path and headers, every message, for the tests.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from pathlib import Path

from websockets.asyncio.server import serve

from .upstream import free_port

EPHEMERAL_SECRET = "ek_68c1f0e2d4a84b6cb1f0deadbeef0123"
REFUSAL = {"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                     "message": "Incorrect API key provided."}}
DELAY = 0.05  # between deltas


class RealtimeUpstream:
    def __init__(self, cert: Path, key: Path, delay: float = DELAY):
        self.port = free_port()
        self.delay = delay
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.handshakes: list[dict] = []
        self.received: list[str | bytes] = []
        self.setups: dict[int, dict] = {}  # a Gemini session's setup message, by connection
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.stopping: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "RealtimeUpstream":
        self.thread.start()
        if not self.ready.wait(15):
            raise RuntimeError("the realtime upstream did not start")
        return self

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stopping = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", self.port, ssl=self.context,
                         max_size=None, compression=None, process_request=self._refuse,
                         select_subprotocol=lambda connection, offered: "realtime"
                         if "realtime" in offered else None):
            self.ready.set()
            await self.stopping.wait()

    def _refuse(self, connection, request):
        if request.path.split("?")[0] != "/v1/refused":
            return None
        self.handshakes.append({"path": request.path, "headers": dict(request.headers.raw_items())})
        response = connection.respond(401, json.dumps(REFUSAL) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        response.headers["WWW-Authenticate"] = 'Bearer realm="test"'
        return response

    async def _handler(self, websocket) -> None:
        request = websocket.request
        self.handshakes.append({"path": request.path, "headers": dict(request.headers.raw_items())})
        path = request.path.split("?")[0]
        if path == "/v1/realtime":
            await self._openai(websocket)
        elif path.endswith("BidiGenerateContent"):
            await self._gemini(websocket)
        elif path == "/v1/audio":
            await self._audio(websocket)
        elif path == "/v1/echo":
            await self._echo(websocket)
        else:
            await websocket.close(1008, "unknown path")

    # -- OpenAI Realtime --

    async def _openai(self, websocket) -> None:
        counter = 0

        def event(kind: str, **fields) -> str:
            nonlocal counter
            counter += 1
            return json.dumps({"type": kind, "event_id": f"event_{counter:04d}", **fields})

        await websocket.send(event("session.created", session={
            "type": "realtime", "id": "sess_001", "model": "gpt-realtime",
            "output_modalities": ["text"],
            "client_secret": {"value": EPHEMERAL_SECRET, "expires_at": 1760000000}}))
        items: list[dict] = []
        async for raw in websocket:
            self.received.append(raw)
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "session.update":
                await websocket.send(event("session.updated", session=message.get("session", {})))
            elif kind == "conversation.item.create":
                item = dict(message["item"], id=f"item_{len(items):03d}")
                items.append(item)
                await websocket.send(event("conversation.item.created", item=item))
            elif kind == "response.create":
                await self._openai_response(websocket, event, items)

    async def _openai_response(self, websocket, event, items: list[dict]) -> None:
        response_id = f"resp_{len(items):03d}"
        await websocket.send(event("response.created", response={"id": response_id, "status": "in_progress"}))
        last = items[-1] if items else {}
        if last.get("type") == "message" and "weather" in json.dumps(last).lower():
            arguments = ['{"loc', 'ation": "Par', 'is, France"}']
            await websocket.send(event("response.output_item.added", response_id=response_id, output_index=0,
                                       item={"id": "fc_001", "type": "function_call", "name": "get_weather",
                                             "call_id": "call_001", "arguments": ""}))
            for piece in arguments:
                await asyncio.sleep(self.delay)
                await websocket.send(event("response.function_call_arguments.delta", response_id=response_id,
                                           item_id="fc_001", output_index=0, call_id="call_001", delta=piece))
            await websocket.send(event("response.function_call_arguments.done", response_id=response_id,
                                       item_id="fc_001", output_index=0, call_id="call_001",
                                       name="get_weather", arguments="".join(arguments)))
            output = [{"id": "fc_001", "type": "function_call", "name": "get_weather",
                       "call_id": "call_001", "arguments": "".join(arguments)}]
        else:
            if last.get("type") == "function_call_output":
                words = ["It is ", "22 degrees ", "and sunny ", "in Paris."]
            else:
                words = ["Hello ", "from ", "the stand-in."]
            for piece in words:
                await asyncio.sleep(self.delay)
                await websocket.send(event("response.output_text.delta", response_id=response_id,
                                           item_id="msg_001", output_index=0, content_index=0, delta=piece))
            await websocket.send(event("response.output_text.done", response_id=response_id, item_id="msg_001",
                                       output_index=0, content_index=0, text="".join(words)))
            output = [{"id": "msg_001", "type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": "".join(words)}]}]
        await websocket.send(event("response.done", response={
            "id": response_id, "status": "completed", "output": output,
            "usage": {"total_tokens": 42, "input_tokens": 30, "output_tokens": 12}}))

    # -- Gemini Live --

    async def _gemini(self, websocket) -> None:
        async for raw in websocket:
            self.received.append(raw)
            message = json.loads(raw)
            if "setup" in message:
                self.setups[id(websocket)] = message["setup"]
                await websocket.send(json.dumps({"setupComplete": {}}).encode())
            elif "clientContent" in message or "client_content" in message:  # proto JSON takes both
                content = message.get("clientContent") or message["client_content"]
                text = content["turns"][-1]["parts"][0]["text"]
                if "weather" in text.lower() and "tools" in self.gemini_setup(websocket):
                    await asyncio.sleep(self.delay)
                    await websocket.send(json.dumps({"toolCall": {"functionCalls": [
                        {"id": "call_001", "name": "get_weather", "args": {"location": "Paris, France"}}]}}).encode())
                    continue
                await self._gemini_text(websocket, ["You ", "said: ", text])
            elif "toolResponse" in message or "tool_response" in message:
                answer = message.get("toolResponse") or message["tool_response"]
                response = (answer.get("functionResponses") or answer["function_responses"])[0]["response"]
                await self._gemini_text(websocket, ["It is ", f"{response['temperature_c']} degrees ",
                                                    f"and {response['sky']} ", "in Paris."])

    def gemini_setup(self, websocket) -> dict:
        return self.setups.get(id(websocket), {})

    async def _gemini_text(self, websocket, pieces: list[str]) -> None:
        for piece in pieces:
            await asyncio.sleep(self.delay)
            await websocket.send(json.dumps(
                {"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}}).encode())
        await websocket.send(json.dumps({"serverContent": {"turnComplete": True}}).encode())
        await websocket.send(json.dumps({"usageMetadata": {
            "promptTokenCount": 5, "responseTokenCount": 4, "totalTokenCount": 9}}).encode())

    # -- binary audio --

    async def _audio(self, websocket) -> None:
        frames = 0
        async for raw in websocket:
            self.received.append(raw)
            if isinstance(raw, bytes):
                frames += 1
                await websocket.send(raw[::-1])
                await websocket.send(json.dumps({"ack": frames, "bytes": len(raw)}))
            elif raw == "done":
                await websocket.close(1000, "bye")
                return

    # -- echo --

    async def _echo(self, websocket) -> None:
        offered = websocket.request.headers.get_all("Sec-WebSocket-Protocol")
        await websocket.send(json.dumps({"offered": offered}))
        async for raw in websocket:
            self.received.append(raw)
            if raw == "close":
                await websocket.close(1000, "bye")
                return
            await websocket.send(raw)
