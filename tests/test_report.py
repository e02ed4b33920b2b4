"""`vcr-proxy report`: rendered by a real browser (headless Chromium), every interaction's final
text and an SVG timeline in the DOM, nothing loaded from outside the file, cassette text inert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

from proxy_addon.cassette import load

from .conftest import CORPUS
from .inspect_helpers import CASES, CHAT, SEED, exchange, expected, write_cassette
from .test_cli import _cli

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)> & "quotes"'


class _Dom(HTMLParser):
    """The text of each <pre class="final">, and the elements the page holds."""

    def __init__(self):
        super().__init__()
        self.finals: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self._in_final = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "pre" and attributes.get("class") == "final":
            self._in_final = True
            self.finals.append("")

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_final = False

    def handle_data(self, data):
        if self._in_final:
            self.finals[-1] += data


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "the report test needs Debian's chromium (make test installs it)"
    return found


def test_report_renders_in_chromium_with_texts_and_timelines(tmp_path):
    hostile = load(SEED)
    hostile.interactions[1].response.body = hostile.interactions[1].response.body.replace(
        '"content":"The weather"', '"content":' + __import__("json").dumps(HOSTILE + " The weather"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hostile.yaml").write_text(hostile.dumps())
    names = [CORPUS / name for name, _ in CASES]
    output = tmp_path / "report.html"
    result = _cli("report", *map(str, names), str(tmp_path / "in"), "-o", str(output))
    assert result.returncode == 0, result.stderr

    page = output.read_text(encoding="utf-8")
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "@import" not in page and "url(" not in page and "<link" not in page
    assert "<script" not in page.replace("&lt;script", "")

    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-dev-shm-usage", "--dump-dom", output.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Dom()
    parsed.feed(dom.stdout)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "img" not in tags  # the hostile body stayed text
    assert any(HOSTILE in final for final in parsed.finals)
    expected_finals = []
    total = 0
    for path in names + [tmp_path / "in" / "hostile.yaml"]:
        family = dict(CASES).get(str(path.relative_to(CORPUS)) if path.is_relative_to(CORPUS) else "",
                      "openai-chat")
        for interaction in load(path).interactions:
            total += 1
            text, _ = expected(interaction.response.body, family)
            if text:
                expected_finals.append(text)
    for text in expected_finals:
        assert text in parsed.finals
    timelines = [a for tag, a in parsed.tags if tag == "svg" and "timeline" in a.get("class", "")]
    assert len(timelines) == total
    assert all(a.get("id") for tag, a in parsed.tags if tag == "article")


def test_report_marks_the_first_token_from_the_sidecar(tmp_path):
    from proxy_addon.timing import Timing, body_hash, event_ends

    path = tmp_path / "kimi.yaml"
    path.write_bytes(SEED.read_bytes())
    lines = []
    for interaction in load(path).interactions:
        times = [500.0 + 20 * k for k in range(len(event_ends(interaction.response.body.encode())))]
        lines.append(Timing(interaction.id, body_hash(interaction.response.body), 400.0, times,
                            times[-1]).to_json())
    (tmp_path / "kimi.timing.jsonl").write_text("\n".join(lines) + "\n")
    result = _cli("report", str(path), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count('class="first-token"') == 2
    assert "first token 520ms" in page  # event 1 of interaction 0 ("I'll get") is the first text


def test_report_with_nothing_to_read_is_one_line(tmp_path):
    result = _cli("report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'missing'}: no such file or folder" in result.stderr


def test_a_cassette_that_cannot_be_read_is_a_problem_on_the_page(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.yaml").write_bytes(SEED.read_bytes())
    (folder / "broken.yaml").write_text("interactions: [unclosed\n")
    write_cassette(folder / "odd.yaml", [exchange(0, CHAT, {"model": "m", "messages": 5},
                                                  json.dumps({"choices": 1.5}))])
    output = tmp_path / "r.html"
    result = _cli("report", "-o", str(output), str(folder))
    assert "Traceback" not in result.stderr
    assert result.returncode == 1 and "broken.yaml" in result.stderr  # the problem, on stderr too
    page = output.read_text()
    assert "broken.yaml" in page and 'class="role">problem<' in page
    assert "The weather in Florence, Italy is currently 40°C" in page  # the rest still rendered
    assert "odd.yaml" in page


def test_report_never_overwrites_a_cassette(tmp_path):
    victim = tmp_path / "victim.yaml"
    victim.write_bytes(SEED.read_bytes())
    for output, inputs in ((victim, [victim]), (tmp_path / "new.yaml", [tmp_path]),
                           (tmp_path / "sub" / ".." / "victim.yaml", [victim])):
        result = _cli("report", "-o", str(output), *map(str, inputs))
        assert result.returncode == 1 and "choose another -o path" in result.stderr, result.stderr
    assert victim.read_bytes() == SEED.read_bytes() and not (tmp_path / "new.yaml").exists()
    result = _cli("report", "-o", str(tmp_path / "report.html"), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "victim.yaml"]  # no temp file left
