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
