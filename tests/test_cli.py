"""`vcr-proxy fmt`: Go's bytes, each file's layout kept, atomic, never over a broken file."""

from __future__ import annotations

import os
import subprocess
import sys

from proxy_addon.cassette import load

from .conftest import CORPUS, ROOT

SEED = CORPUS / "seed-dialect" / "TestOpenRouterCommon" / "tool_streaming_kimi-k2_fireworks.yaml"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), *args],
                          capture_output=True, text=True, cwd=cwd)


def _reindented(text: str) -> str:
    # Same data, hand-edited layout: every body on one quoted line, indented by 3.
    cassette = load(SEED)
    return cassette.dumps().replace("\n    request:", "\n    request:")


def test_fmt_check_lists_changed_files_and_writes_nothing(tmp_path):
    messy = tmp_path / "messy.yaml"
    messy.write_text(SEED.read_text().replace("version: 2", "version:   2"))
    clean = tmp_path / "clean.yaml"
    clean.write_bytes(SEED.read_bytes())
    before = messy.read_bytes()
    result = _cli("fmt", "--check", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [str(messy)]
    assert messy.read_bytes() == before


def test_fmt_rewrites_in_gos_bytes_keeping_the_layout(tmp_path):
    messy = tmp_path / "messy.yaml"
    messy.write_text(SEED.read_text().replace("version: 2", "version:   2").replace("---\n", ""))
    os.chmod(messy, 0o600)
    result = _cli("fmt", str(messy))
    assert result.returncode == 0, result.stderr
    assert messy.read_bytes() == SEED.read_bytes()
    assert os.stat(messy).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["messy.yaml"]
    assert _cli("fmt", "--check", str(messy)).returncode == 0


def test_fmt_layout_converts_between_layouts(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(SEED.read_bytes())
    assert _cli("fmt", "--layout", "indent2-compact", str(path)).returncode == 0
    converted = path.read_text()
    assert "\n- id: 0\n  request:\n    proto: HTTP/1.1\n" in converted
    assert load(path) == load(SEED)
    assert _cli("fmt", "--layout", "indent4-compact", str(path)).returncode == 0
    assert path.read_bytes() == SEED.read_bytes()


def test_fmt_unknown_layout_is_a_usage_error(tmp_path):
    result = _cli("fmt", "--layout", "tabs", str(SEED))
    assert result.returncode == 2
    assert "unknown layout 'tabs'" in result.stderr
    assert "Traceback" not in result.stderr


def test_fmt_never_touches_a_file_that_does_not_load(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 2\ninteractions: [\n")
    result = _cli("fmt", str(broken))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{broken}:")
    assert broken.read_text() == "version: 2\ninteractions: [\n"


ANTHROPIC = CORPUS / "seed-dialect" / "TestAnthropicCommon" / "multi_tool_streaming_claude-sonnet-4.yaml"
LEAKY_KEY = "sk-or-v1-" + "0123456789abcdef" * 4


def _leaky(tmp_path):
    from proxy_addon.cassette import loads

    cassette = loads(SEED.read_bytes())
    first = cassette.interactions[0]
    first.request.headers["Authorization"] = [f"Bearer {LEAKY_KEY}"]
    first.request.url += "?key=AIza" + "A" * 35
    first.request.body = first.request.body.replace("helpful", LEAKY_KEY)
    path = tmp_path / "leaky.yaml"
    path.write_text(cassette.dumps())
    return path


def test_check_fails_on_anything_that_looks_like_a_credential(tmp_path):
    path = _leaky(tmp_path)
    result = _cli("check", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any("request header Authorization" in line for line in lines)
    assert any("request url parameter key" in line for line in lines)
    assert any("request body: a credential's value" in line for line in lines)
    assert not any(LEAKY_KEY in line or "AIza" in line for line in lines)
    assert all(f"vcr-proxy redact {path}" in line for line in lines)


def test_redact_scrubs_credentials_atomically_in_gos_bytes(tmp_path):
    path = _leaky(tmp_path)
    result = _cli("redact", str(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == f"redacted {path}"
    text = path.read_text()
    assert LEAKY_KEY not in text and "AIza" not in text and "Authorization" not in text
    assert _cli("check", str(path)).returncode == 0
    assert _cli("fmt", "--check", str(path)).returncode == 0
    assert load(path).layout == load(SEED).layout


def test_ls_tabulates_hosts_models_streams_time_and_tokens(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "claude.yaml").write_bytes(ANTHROPIC.read_bytes())
    result = _cli("ls", str(tmp_path))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["CASSETTE", "INTERACTIONS", "HOSTS", "MODELS", "STREAMED", "DURATION",
                              "TOKENS", "IN/OUT"]
    assert row.split() == ["a/claude.yaml", "2", "api.anthropic.com", "claude-sonnet-4-20250514",
                           "2/2", "2.346392209s", "1202/168"]


def test_show_lists_interactions_and_json_for_scripts():
    import json

    text = _cli("show", str(SEED))
    assert text.returncode == 0
    assert text.stdout.startswith("#0 POST https://openrouter.ai/api/v1/chat/completions -> 200 OK "
                                  "in 10.057092666s (stream)\n")
    data = json.loads(_cli("show", "--json", str(SEED)).stdout)
    assert [i["id"] for i in data["interactions"]] == [0, 1]
    assert data["interactions"][0]["model"] == "moonshotai/kimi-k2-0905"
    assert data["layout"] == "indent4-compact"
