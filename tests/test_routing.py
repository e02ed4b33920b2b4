"""The routing rules, driven without a proxy."""

from __future__ import annotations

import pytest

from proxy_addon.cassette import load
from proxy_addon.routing import (DEFAULT_HOSTS, CassetteHosts, HostPatterns, Routes, host_mismatch,
                                 hosts_in_cassette, normalize_host, parse_hosts)

from .conftest import CORPUS, corpus_files


def routes(hosts="", passthrough="", cassettes=None) -> Routes:
    return Routes(HostPatterns(parse_hosts(hosts)), HostPatterns(parse_hosts(passthrough, ())), cassettes)


@pytest.mark.parametrize("spelling", ["api.openai.com", "API.OpenAI.com", "api.openai.com.",
                                      "api.openai.com..", "[api.openai.com]"])
def test_host_spellings_normalise_to_one(spelling):
    assert normalize_host(spelling) == "api.openai.com"


def test_international_names_compare_as_punycode():
    assert normalize_host("bücher.example") == "xn--bcher-kva.example"
    assert HostPatterns(["bücher.example"]).matches("XN--BCHER-KVA.example.")


def test_hosts_option_adds_with_plus_and_replaces_without():
    assert parse_hosts("") == list(DEFAULT_HOSTS)
    assert parse_hosts("+my-llm.internal,+Other.Example.") == list(DEFAULT_HOSTS) + [
        "my-llm.internal", "other.example"]
    assert parse_hosts("a.example,b.example") == ["a.example", "b.example"]


@pytest.mark.parametrize("host", [
    "openrouter.ai", "bedrock-runtime.us-east-1.amazonaws.com", "bedrock-runtime.eu-west-3.amazonaws.com",
    "api.cerebras.ai", "router.huggingface.co", "api-inference.huggingface.co", "inference.baseten.co",
    "dashscope-intl.aliyuncs.com", "dashscope-us.aliyuncs.com", "dashscope.aliyuncs.com", "api.z.ai",
    "ai-gateway.vercel.sh", "gateway.ai.cloudflare.com", "api.cloudflare.com", "api.together.xyz",
    "api.fireworks.ai", "api.perplexity.ai", "api.cohere.com", "api.moonshot.ai", "api.deepinfra.com",
    "integrate.api.nvidia.com", "api.sambanova.ai", "us-east5-aiplatform.googleapis.com",
    "my-resource.openai.azure.com"])
def test_default_hosts_cover_the_providers_of_real_cassettes(host):
    assert routes().handles(host, "record")


def test_replay_handles_every_host_but_passthrough_ones():
    rules = routes(passthrough="*.corp.example")
    for host in ("unknown.example", "localhost", "127.0.0.1", "api.openai.com."):
        assert rules.intercepts(host, "replay") and rules.handles(host, "replay")
    assert not rules.intercepts("git.corp.example", "replay")
    assert not rules.intercepts("GIT.corp.example.", "replay")


def test_other_modes_handle_recorded_and_cassette_hosts_only():
    class Named:
        def hosts(self):
            return frozenset({"llm.internal"})

    rules = routes(cassettes=Named())
    for mode in ("once", "record", "new-episodes"):
        assert rules.handles("api.anthropic.com", mode)
        assert rules.handles("LLM.internal.", mode)
        assert not rules.intercepts("github.com", mode)
    assert not rules.intercepts("api.anthropic.com", "passthrough")
    assert rules.intercepts("vcr-proxy.control", "passthrough")
    assert not routes(passthrough="api.anthropic.com").handles("api.anthropic.com", "record")


@pytest.mark.parametrize("host_header, sni, refused", [
    ("api.openai.com", None, False),
    ("API.openai.com.:443", "api.openai.com", False),
    ("api.openai.com:8443", None, True),
    ("evil.example", None, True),
    ("api.openai.com", "evil.example", True),
    ("user@api.openai.com", None, False),
    (None, None, False),
])
def test_a_host_or_server_name_other_than_the_target_is_refused(host_header, sni, refused):
    assert (host_mismatch("api.openai.com", 443, "https", host_header, sni) is not None) == refused


def test_cassette_hosts_are_read_from_every_corpus_cassette(tmp_path):
    expected = set()
    for path in corpus_files():
        expected |= {normalize_host(i.request.url.split("/")[2].rsplit(":", 1)[0])
                     for i in load(path).interactions}
        assert hosts_in_cassette(path.read_bytes()) == {
            normalize_host(i.request.url.split("/")[2].rsplit(":", 1)[0]) for i in load(path).interactions}
    assert CassetteHosts(CORPUS).hosts() == expected


def test_cassette_hosts_follow_the_folder(tmp_path):
    scan = CassetteHosts(tmp_path)
    scan.RESCAN_AFTER = 0
    assert scan.hosts() == frozenset()
    (tmp_path / "a.yaml").write_text("version: 2\ninteractions:\n    - id: 0\n      request:\n"
                                     "        url: https://New.Example:8443/v1\n")
    assert scan.hosts() == {"new.example"}
    (tmp_path / "a.yaml").unlink()
    assert scan.hosts() == frozenset()


def test_relays_opened_before_a_switch_are_stale_where_the_new_mode_would_answer():
    from proxy_addon.relays import TUNNEL, WEBSOCKET, Relay, Relays

    rules = Routes(HostPatterns(parse_hosts("")), HostPatterns(["localhost"]))
    relays = Relays()
    relays.opened("c1", Relay("c1", TUNNEL, "example.com", 443, "passthrough"))
    relays.opened("c2", Relay("c2", TUNNEL, "api.openai.com", 443, "passthrough"))
    relays.opened("c3", Relay("c3", TUNNEL, "localhost", 8000, "passthrough"))
    relays.opened("f1", Relay("c4", WEBSOCKET, "api.openai.com", 443, "record"))
    # Record mode opens up the recorded hosts: a tunnel to one would record nothing.
    assert [r.client for r in relays.stale(rules, "record")] == ["c2"]
    assert relays.stale(rules, "record") == []  # forgotten once named
    # Replay answers every host but the passthrough hosts, WebSockets included.
    assert sorted(r.client for r in relays.stale(rules, "replay")) == ["c1", "c4"]
    assert len(relays) == 1
    relays.client_gone("c3")
    assert not relays
