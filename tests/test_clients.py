"""Real clients in a shell set up by `vcr-proxy env` alone: recorded, then replayed offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT
from .proxy import Proxy
from .test_record import CHAT, TEST_KEY, recorded
from .upstream import Upstream, make_certificate

BODY = '{"model": "moonshotai/kimi-k2-0905", "messages": [{"role": "user", "content": "hi"}]}'
STREAM_BODY = '{"model": "moonshotai/kimi-k2-0905", "stream": true, "messages": []}'


@pytest.fixture(scope="module")
def go_client(tmp_path_factory):
    build = tmp_path_factory.mktemp("go_client")
    env = dict(os.environ, GO111MODULE="off", GOCACHE=str(build / "cache"), GOFLAGS="")
    subprocess.run([shutil.which("go"), "build", "-o", str(build / "go_client"), "."],
                   cwd=ROOT / "tests" / "go_client", env=env, check=True)
    return build / "go_client"


NODE_CLIENT = """
import { ProxyAgent, setGlobalDispatcher, fetch } from "undici";

// undici does not read HTTPS_PROXY by itself; the CA comes from NODE_EXTRA_CA_CERTS.
setGlobalDispatcher(new ProxyAgent(process.env.HTTPS_PROXY));
const [url, body] = process.argv.slice(2);
const response = await fetch(url, {method: "POST", body, headers: {"content-type": "application/json"}});
process.stdout.write(`${response.status}\\n${await response.text()}`);
"""


@pytest.fixture(scope="module")
def node_client(tmp_path_factory):
    """Node 20 with undici's ProxyAgent, installed from the npm registry."""
    folder = tmp_path_factory.mktemp("node_client")
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder),
                    "undici@6"], check=True, timeout=300, capture_output=True)
    script = folder / "client.mjs"
    script.write_text(NODE_CLIENT)
    return script


def in_env_shell(proxy: Proxy, command: str) -> subprocess.CompletedProcess:
    """Run `command` in a bash whose only set-up is `eval "$(vcr-proxy env ...)"`."""
    launcher = f"{sys.executable} {ROOT / 'scripts' / 'vcr-proxy'}"
    script = (f'eval "$({launcher} env --port {proxy.port} --confdir {proxy.confdir})" && '
              f"{command}")
    clean = {k: v for k, v in os.environ.items()
             if not k.lower().endswith("_proxy") and k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                                                               "CURL_CA_BUNDLE")}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=clean)


def clients(go_client, node_client) -> dict[str, str]:
    python = (f"{sys.executable} -c 'import httpx, sys; r = httpx.post(sys.argv[1], content=sys.argv[2], "
              f"headers={{\"Content-Type\": \"application/json\", \"Authorization\": \"Bearer {TEST_KEY}\"}}); "
              "print(r.status_code); print(r.text, end=\"\")'")
    requests = (f"{sys.executable} -c 'import requests, sys; r = requests.post(sys.argv[1], data=sys.argv[2], "
                "headers={\"Content-Type\": \"application/json\"}); print(r.status_code); print(r.text, end=\"\")'")
    sdk = ROOT / "tests" / "sdk_client.py"
    return {
        "openai": f"{sys.executable} {sdk} openai",
        "openai-stream": f"{sys.executable} {sdk} openai-stream",
        "anthropic": f"{sys.executable} {sdk} anthropic",
        "anthropic-stream": f"{sys.executable} {sdk} anthropic-stream",
        "requests": f"{requests} {CHAT} '{BODY}'",
        "curl": f"curl -sS -H 'Authorization: Bearer {TEST_KEY}' -H 'Content-Type: application/json' "
                f"-d '{BODY}' {CHAT}",
        "curl-stream": f"curl -sS -N -H 'Content-Type: application/json' -d '{STREAM_BODY}' {CHAT}",
        "go": f"{go_client} {CHAT} '{BODY}'",
        "node": f"node {node_client} {CHAT} '{BODY}'",
        "httpx": f"{python} {CHAT} '{BODY}'",
    }


def test_clients_record_then_replay_offline_with_the_same_output(tmp_path, go_client, node_client):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    recorder = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=upstream.url).start()
    outputs = {}
    try:
        for name, command in clients(go_client, node_client).items():
            result = in_env_shell(recorder, command)
            assert result.returncode == 0, (name, result.stderr)
            outputs[name] = result.stdout
        recorded(recorder.cassettes / "default.yaml", len(outputs))
    finally:
        recorder.stop()
        upstream.stop()
    assert '"gen-test-2"' in outputs["curl"] and outputs["go"].startswith("200 OK\n")
    assert outputs["node"].startswith("200\n")
    assert outputs["curl-stream"].endswith("data: [DONE]\n\n")

    player = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        for name, command in clients(go_client, node_client).items():
            result = in_env_shell(player, command)
            assert result.returncode == 0, (name, result.stderr, player.output()[-2000:])
            assert result.stdout == outputs[name], name
    finally:
        player.stop()


def test_env_prints_every_variable_for_each_shell(tmp_path):
    launcher = [sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "env", "--port", "9999",
                "--confdir", str(tmp_path)]
    bash = subprocess.run(launcher, capture_output=True, text=True, check=True).stdout
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"):
        assert f"export {name}=" in bash
    assert "export HTTPS_PROXY=http://127.0.0.1:9999" in bash
    bundle = (tmp_path / "vcr-proxy-ca-bundle.pem").read_text()
    assert (tmp_path / "mitmproxy-ca-cert.pem").read_text() in bundle
    assert bundle.count("BEGIN CERTIFICATE") > 10  # the system's roots are there too
    fish = subprocess.run(launcher + ["--shell", "fish"], capture_output=True, text=True, check=True).stdout
    assert "set -gx HTTPS_PROXY http://127.0.0.1:9999;" in fish
    powershell = subprocess.run(launcher + ["--shell", "powershell"], capture_output=True, text=True,
                                check=True).stdout
    assert "$env:HTTPS_PROXY = 'http://127.0.0.1:9999'" in powershell


def test_shell_starts_a_subshell_with_the_variables_set(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "shell", "--port", "9998",
                             "--confdir", str(tmp_path)], input='echo "$HTTPS_PROXY $SSL_CERT_FILE"; exit\n',
                            capture_output=True, text=True, timeout=30, env=dict(os.environ, SHELL="/bin/bash"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["http://127.0.0.1:9998", str(tmp_path / "vcr-proxy-ca-bundle.pem")]
