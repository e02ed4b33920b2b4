"""Another local user, as the tests run it: `setpriv --reuid=65534 --regid=65534 --clear-groups
/usr/bin/python3 other_user.py COMMAND ...`, from a copy in /tmp (that user may not read the
checkout). Standard library only; it prints one JSON object and only ever connects to the
127.0.0.1 ports it is given.

    listening                  the 127.0.0.1 ports listening, as /proc/net/tcp shows them to anyone
    control PORT [FILE]        steer the proxy on PORT through http://vcr-proxy.control/ (tokens
                               anyone could guess); FILE: try to read the control token there
    replay PID PORT...         until stdin closes, request replay-server paths on the PORTs (the
                               old guessable ones, /__vcr-proxy-replay__/N-PID, and random ones)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import threading


def listening() -> list[int]:
    ports = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and address == "0100007F":  # LISTEN on 127.0.0.1
                ports.append(int(port, 16))
    return sorted(ports)


def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if _ and length and len(body) >= int(length[0]):
                    break
        except (TimeoutError, ConnectionError):
            pass
    return answer


def status(answer: bytes) -> int:
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def control(port: int, token_file: str | None) -> dict:
    found = {"listed": port in listening(), "answers": []}
    body = json.dumps({"name": "taken-over", "mode": "passthrough"}).encode()
    for token in ("1", "", "true", "0", "yes"):
        for method, path, content in (("POST", "/cassette", body), ("GET", "/status", b""),
                                      ("POST", "/eject", b"")):
            request = (f"{method} http://vcr-proxy.control{path} HTTP/1.1\r\n"
                       f"Host: vcr-proxy.control\r\nX-Vcr-Control: {token}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n"
                       "Connection: close\r\n\r\n").encode() + content
            answer = exchange(port, request)
            found["answers"].append({"token": token, "path": path, "status": status(answer),
                                     "body": answer.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")})
    if token_file:
        try:
            with open(token_file) as handle:
                found["token_file"] = "read: " + handle.read()
        except OSError as error:
            found["token_file"] = f"refused: {error.strerror}"
    return found


def replay(pid: int, ports: list[int]) -> dict:
    stop = threading.Event()
    lock = threading.Lock()
    found = {"taken": 0, "taken_bytes": 0, "statuses": {}, "requests": 0}

    def read_stdin() -> None:
        sys.stdin.read()
        stop.set()

    def guesses():
        while not stop.is_set():
            for number in range(1, 46):  # a fresh proxy: its first plans
                yield f"/__vcr-proxy-replay__/{number}-{pid}"
            yield "/__vcr-proxy-replay__/" + secrets.token_urlsafe(32)
            yield "/__vcr-proxy-replay__/"
            yield "/"

    def hammer(offset: int) -> None:
        for index, path in enumerate(guesses()):
            if index % 3 != offset:
                continue
            for port in ports:
                request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Connection: close\r\n\r\n").encode()
                try:
                    answer = exchange(port, request, timeout=10)
                except OSError:
                    continue
                code = status(answer)
                with lock:
                    found["requests"] += 1
                    found["statuses"][code] = found["statuses"].get(code, 0) + 1
                    if code == 200:
                        found["taken"] += 1
                        found["taken_bytes"] += len(answer)

    threading.Thread(target=read_stdin, daemon=True).start()
    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return found


def main() -> None:
    command, arguments = sys.argv[1], sys.argv[2:]
    result: dict = {"uid": os.getuid()}
    if command == "listening":
        result["ports"] = listening()
    elif command == "control":
        result.update(control(int(arguments[0]), arguments[1] if len(arguments) > 1 else None))
    elif command == "replay":
        result.update(replay(int(arguments[0]), [int(port) for port in arguments[1:]]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
