"""The direct replay front (`vcr_front=direct`): replay-mode connections served without
mitmproxy's layers.

mitmproxy spends about 6 ms of CPU on each new client connection (its CONNECT, TLS and HTTP
layers, and a dozen hooks): a load test whose virtual users open a connection per stream held
about 20 timed streams a core. For a connection this proxy would answer from cassettes anyway
(replay mode, a host it handles, CONNECT from loopback), the front answers the CONNECT itself,
terminates TLS with Python's `ssl` (a certificate from mitmproxy's own store) and reads HTTP/1.1
with mitmproxy's parser. Each request becomes an HTTPFlow handed to the addon's `request` hook,
so matching, scrubbing, misses, faults and the session are the addon's own; the answer, or its
paced plan, is then written straight onto the socket. Every other connection (another host, the
control host, plain HTTP, another mode, proxy authentication) goes to mitmproxy untouched.

listener.py  where connections arrive: take them, or hand them to mitmproxy
certificates.py  TLS contexts from mitmproxy's certificate store
connection.py  one client connection: TLS, requests, answers
sending.py  writing an answer, a paced plan piece by piece
"""
