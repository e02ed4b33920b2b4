"""Realtime sessions (WebSockets: OpenAI Realtime, Gemini Live) recorded beside the cassette and
replayed from it.

A go-vcr cassette holds HTTP exchanges only, and must stay the bytes Go writes, so a WebSocket
session goes to a line-oriented sidecar of its own, `NAME.realtime.jsonl` beside `NAME.yaml`
(format.py documents it). The modules:

- format.py: the sidecar's lines, written and read;
- scrub.py: credentials out of the handshake (headers, `key=`, subprotocols) and the messages;
- store.py: appending to the sidecar under the cassette's lock, by its file rules;
- recorder.py: a relayed session, line by line as it goes;
- matcher.py: a client message against the recorded one (JSON as values, `event_id` ignored);
- player.py: the in-process WebSocket server that plays a recorded session;
- hooks.py: what the addon calls (upgrade, start, message, end).
"""
