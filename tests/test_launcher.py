"""`vcr-proxy start`: the proxy in one line, stopped cleanly by Ctrl-C with everything saved."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time

import httpx

from proxy_addon.cassette import load

from .conftest import ROOT
from .upstream import Upstream, free_port, make_certificate


def test_start_records_and_stops_cleanly_on_ctrl_c(tmp_path):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "start", "--port", str(port),
         "--dir", str(tmp_path / "cassettes"), "--confdir", str(tmp_path / "conf"),
         "--upstream", upstream.url, "--set", f"ssl_verify_upstream_trusted_ca={cert}"],
        stderr=subprocess.PIPE, text=True)
    try:
        ca = tmp_path / "conf" / "mitmproxy-ca-cert.pem"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                if ca.exists():
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        context = ssl.create_default_context(cafile=ca)
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=context) as client:
            response = client.post("https://openrouter.ai/api/v1/chat/completions", json={"a": 1},
                                   headers={"Authorization": "Bearer sk-test-SECRET"})
            assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        stderr = process.stderr.read()
        assert "Traceback" not in stderr
        assert "recorded POST https://openrouter.ai/api/v1/chat/completions -> 200" in stderr
        assert "client connect" not in stderr  # mitmproxy's own chatter is off
        assert len(load(tmp_path / "cassettes" / "default.yaml").interactions) == 1
    finally:
        if process.poll() is None:
            process.kill()
        upstream.stop()


def test_start_with_a_bad_option_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "start",
                             "--port", str(free_port()), "--layout", "tabs",
                             "--confdir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vcr-proxy: vcr_layout: unknown layout 'tabs'; choose one of indent4, indent4-compact, "
        "indent2-compact, indent2"]
