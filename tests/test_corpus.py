"""Every real cassette Go wrote comes back byte for byte, in its own layout."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from proxy_addon.cassette import load
from proxy_addon.serializers.emitter import INDENT2_COMPACT, INDENT4, INDENT4_COMPACT, LAYOUTS

from .conftest import CORPUS, ROOT, corpus_files

EXPECTED_LAYOUTS = {
    "go-vcr-default": {INDENT4},
    "compact-indent-2": {INDENT2_COMPACT},
    # The seed's files were written over time: mostly indent 4 compact, some plain indent 4,
    # and two in yaml.v3's indent 2 without compact sequences.
    "seed-dialect": {INDENT4_COMPACT, INDENT4, LAYOUTS.get("indent2")},
}


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_cassette_round_trips_byte_identical(path):
    cassette = load(path)
    assert cassette.layout in EXPECTED_LAYOUTS[path.relative_to(CORPUS).parts[0]]
    assert cassette.dumps().encode() == path.read_bytes()


def test_corpus_has_all_three_layouts():
    layouts = {load(path).layout.name for path in corpus_files()}
    assert layouts == {"indent4", "indent4-compact", "indent2-compact", "indent2"}


def test_go_itself_writes_the_indent4_corpus(go_oracle):
    # The oracle is only as good as its agreement with real files.
    for path in sorted((CORPUS / "go-vcr-default").rglob("*.yaml")):
        status, stable, output = go_oracle.round_trip(path.read_bytes())
        assert (status, output) == (0, path.read_bytes()), path


def test_fmt_check_accepts_the_whole_corpus():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "fmt", "--check",
                             str(CORPUS)], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_check_accepts_the_whole_corpus():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "check",
                             str(CORPUS)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    assert re.fullmatch(r"\d+ cassettes, \d+ interactions, no problems\n", result.stdout)
