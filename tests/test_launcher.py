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
from .test_record import recorded
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
        assert len(recorded(tmp_path / "cassettes" / "default.yaml").interactions) == 1
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


def test_an_option_of_another_mitmproxy_addon_brings_them_all_in(tmp_path):
    # `vcr-proxy start` runs mitmproxy with a lean set of addons; an option that belongs to
    # one of the others (here the save addon's) loads mitmproxy's full set instead.
    from mitmproxy import io

    from .proxy import Proxy

    flows = tmp_path / "flows.mitm"
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", save_stream_file=str(flows)).start()
    try:
        with proxy.client() as client:
            assert client.get("https://openrouter.ai/api/v1/models").status_code == 404
    finally:
        proxy.stop()
    with open(flows, "rb") as stream:
        saved = list(io.FlowReader(stream).stream())
    assert [flow.request.pretty_url for flow in saved] == ["https://openrouter.ai/api/v1/models"]
    assert proxy.output().count("vcr-proxy (replay") == 1


def test_an_option_no_addon_knows_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "start",
                             "--port", str(free_port()), "--set", "no_such_option=1",
                             "--confdir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2, ["vcr-proxy: Unknown option(s): no_such_option"])


def test_onboarding_can_be_left_out_and_other_addons_still_come_in(tmp_path):
    """`--set onboarding=false` (the pytest plugin's) leaves out http://mitm.it, and with it
    Flask's import; it also works when another option brings mitmproxy's full set in."""
    from .proxy import Proxy

    for label, options in (("default", {}), ("off", {"onboarding": "false"}),
                           ("off, full set", {"onboarding": "false",
                                              "save_stream_file": str(tmp_path / "flows.mitm")}),
                           # A spelling the lean set takes is no error with the full set either.
                           ("False, full set", {"onboarding": "False",
                                                "save_stream_file": str(tmp_path / "f2.mitm")})):
        proxy = Proxy(tmp_path / label.replace(" ", "").replace(",", ""), launcher=True,
                      vcr_mode="passthrough", **options).start()
        try:
            with proxy.client() as client:
                page = client.get("http://mitm.it/cert/pem")
        except httpx.HTTPError as error:  # passthrough: the real mitm.it, unreachable here
            page = error
        finally:
            proxy.stop()
        served = isinstance(page, httpx.Response) and page.content == proxy.ca.read_bytes()
        assert served == (label == "default"), label
        assert "Traceback" not in proxy.output()
