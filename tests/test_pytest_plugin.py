"""The pytest plugin, exercised on a small test project with pytester."""

from __future__ import annotations

import pytest

from .upstream import Upstream, make_certificate

pytest_plugins = ["pytester"]

PROJECT_TEST = '''
import httpx


def test_chat(vcr_cassette):
    response = httpx.post("https://openrouter.ai/api/v1/chat/completions",
                          json={"model": "m", "messages": []},
                          headers={"Authorization": "Bearer sk-test-not-on-disk"})
    assert response.json()["id"] == "gen-test-2"


def test_stream():
    with httpx.stream("POST", "https://openrouter.ai/api/v1/chat/completions",
                      json={"stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
'''


def test_plugin_records_then_replays_a_project_offline(pytester: pytest.Pytester, tmp_path):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    pytester.makepyfile(test_example=PROJECT_TEST)
    common = ["-p", "proxy_addon.pytest_plugin", f"--vcr-confdir={tmp_path / 'conf'}"]
    try:
        first = pytester.runpytest_subprocess(*common, f"--vcr-upstream={upstream.url}",
                                              f"--vcr-set=ssl_verify_upstream_trusted_ca={cert}")
        first.assert_outcomes(passed=2)
    finally:
        upstream.stop()
    cassettes = pytester.path / "tests" / "cassettes" / "test_example"
    assert sorted(p.name for p in cassettes.glob("*.yaml")) == ["test_chat.yaml", "test_stream.yaml"]
    assert "sk-test-not-on-disk" not in (cassettes / "test_chat.yaml").read_text()
    # The upstream is gone: replay answers everything from the cassettes.
    second = pytester.runpytest_subprocess(*common, "--vcr-mode=replay")
    second.assert_outcomes(passed=2)
