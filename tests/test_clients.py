"""Real clients in a shell set up by `vcr-proxy env` alone: recorded, then replayed offline."""

from __future__ import annotations

import json
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
                 "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "VCR_PROXY_CONTROL_TOKEN"):
        assert f"export {name}=" in bash
    token = (tmp_path / "vcr-proxy-control-token").read_text().strip()
    assert f"export VCR_PROXY_CONTROL_TOKEN={token}\n" in bash
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


def test_a_shell_set_up_by_env_steers_the_proxy_as_the_readme_shows(tmp_path):
    """The README's curl lines, in a shell whose only set-up is `eval "$(vcr-proxy env)"`: the
    token comes from VCR_PROXY_CONTROL_TOKEN; without it the endpoint says where it is."""
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay").start()
    curl = f"curl -sS -x http://127.0.0.1:{proxy.port}"
    try:
        result = in_env_shell(proxy, (
            f"{curl} -H \"X-Vcr-Control: $VCR_PROXY_CONTROL_TOKEN\" http://vcr-proxy.control/cassette "
            "-d '{\"name\": \"suite/test\", \"mode\": \"passthrough\"}' && echo && "
            f"{curl} -H \"X-Vcr-Control: $VCR_PROXY_CONTROL_TOKEN\" -X POST http://vcr-proxy.control/eject && echo && "
            f"{curl} -H 'X-Vcr-Control: 1' http://vcr-proxy.control/status"))
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    selected, ejected, refused = (json.loads(line) for line in result.stdout.splitlines())
    assert (selected["cassette"], selected["mode"]) == ("suite/test", "passthrough")
    assert ejected["mode"] == "passthrough"
    assert "X-Vcr-Control: <token>" in refused["error"]["message"]


def test_a_token_given_in_the_environment_is_the_one_required_and_exported(tmp_path):
    token = "a-runner-chose-this-token-0123456789"
    launcher = [sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "env", "--confdir", str(tmp_path)]
    chosen = dict(os.environ, VCR_PROXY_CONTROL_TOKEN=token)
    exported = subprocess.run(launcher, capture_output=True, text=True, check=True, env=chosen).stdout
    assert f"export VCR_PROXY_CONTROL_TOKEN={token}\n" in exported
    short = subprocess.run(launcher, capture_output=True, text=True, env=dict(chosen, VCR_PROXY_CONTROL_TOKEN="1"))
    assert short.returncode == 1 and short.stdout == ""
    assert short.stderr.strip().endswith("give 16 or more, e.g. from python3 -c 'import secrets; "
                                         "print(secrets.token_urlsafe(32))'")
    assert len(short.stderr.strip().splitlines()) == 1
