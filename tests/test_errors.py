"""Bad cassettes give one line: the file, the line, what is wrong and what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxy_addon.cassette import load
from proxy_addon.errors import CassetteError

from .conftest import ROOT

GOOD = """---
version: 2
interactions:
  - id: 0
    request:
        proto: HTTP/1.1
        url: https://openrouter.ai/api/v1/models
        method: GET
    response:
        body: ok
        code: 200
        duration: 1.5s
"""

FAULTS = {
    "not_yaml": ("version: 2\ninteractions: [\n  - {id: 0\n", 3, "not valid YAML"),
    "not_a_mapping": ("- just\n- a list\n", 1, "expected a mapping"),
    "empty": ("", None, "empty file"),
    "version_1": (GOOD.replace("version: 2", "version: 1"), 2, "re-record"),
    "version_3": (GOOD.replace("version: 2", "version: 3"), 2, "unsupported cassette version 3"),
    "no_version": (GOOD.replace("version: 2\n", ""), 2, "no 'version' field"),
    "missing_url": (GOOD.replace("        url: https://openrouter.ai/api/v1/models\n", ""), 6,
                    "missing field 'url'"),
    "missing_request": (GOOD.replace("    request:\n        proto: HTTP/1.1\n        url: "
                                     "https://openrouter.ai/api/v1/models\n        method: GET\n", ""),
                        4, "missing field 'request'"),
    "code_is_text": (GOOD.replace("code: 200", "code: OK"), 11, "expected an integer, found 'OK'"),
    "code_is_quoted": (GOOD.replace("code: 200", 'code: "200"'), 11, "remove the quotes"),
    "headers_not_lists": (GOOD.replace("        body: ok\n", "        body: ok\n        headers:\n"
                                       "            Content-Type: text/plain\n"), 12,
                          "expected a list"),
    "duration_without_unit": (GOOD.replace("1.5s", "15"), 12, "has no unit"),
    "duration_bad_unit": (GOOD.replace("1.5s", "1.5 seconds"), 12, "Go refuses"),
    "duplicate_ids": (GOOD + GOOD.split("interactions:\n")[1], 13, "duplicate interaction id 0"),
    "duplicate_key": (GOOD.replace("        code: 200\n", "        code: 200\n        code: 201\n"), 12,
                      "duplicate key 'code'"),
    "bad_base64": (GOOD.replace("body: ok", "body: !!binary '%%%'"), 10, "not valid base64"),
    "null_interaction": (GOOD.replace("interactions:\n", "interactions:\n  - null\n"), 4,
                         "interaction #0 is empty"),
    "alias_bomb": ("version: 2\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
                   "interactions:\n  - id: 0\n    request: {url: u, method: GET, form: {k: *d}}\n"
                   "    response: {code: 200}\n", None, "expected a value, found a list"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_is_one_clear_line(tmp_path, name):
    text, line, words = FAULTS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(CassetteError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}")
    assert words in message


def test_invalid_utf8_file_is_one_clear_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(GOOD.encode().replace(b"body: ok", b"body: \xff\xfe"))
    with pytest.raises(CassetteError, match="not valid YAML") as caught:
        load(path)
    assert "\n" not in str(caught.value)


def test_the_good_cassette_loads(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    cassette = load(path)
    assert cassette.interactions[0].response.duration == 1_500_000_000


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), *args],
                          capture_output=True, text=True)


def test_check_prints_one_line_per_bad_file_and_no_traceback(tmp_path):
    for name, (text, _, _) in FAULTS.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "good.yaml").write_text(GOOD)
    result = _cli("check", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == len(FAULTS)
    assert "Traceback" not in result.stderr
    assert all(line.startswith(str(tmp_path)) for line in lines)
    assert not any("good.yaml" in line for line in lines)


def test_check_flags_fields_go_ignores(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(GOOD.replace("        code: 200\n", "        code: 200\n        heders: {}\n"))
    result = _cli("check", str(path))
    assert result.returncode == 1
    assert "unknown field 'heders'" in result.stderr


def test_check_names_a_missing_path(tmp_path):
    result = _cli("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path / 'nope.yaml'}: no such file or folder"
