"""Cassette folders that fight back: side files that are symlinks (or hard links) to files
outside the folder, and a cassette or its whole folder deleted while recording."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from proxy_addon.cassette import Interaction, Request, Response, load
from proxy_addon.errors import CassetteError
from proxy_addon.persisters.filesystem import CassetteWriter
from proxy_addon.serializers.emitter import INDENT4_COMPACT
from proxy_addon.timing import Timing, read_sidecar, sidecar_path

SIDE_FILES = {
    "marker": ".c.yaml.appending",
    "sidecar": "c.timing.jsonl",
    "lock": ".c.yaml.lock",
}


def item(n: int = 0) -> tuple[Interaction, Timing]:
    return (Interaction(id=n, request=Request(url=f"https://x/{n}", method="POST", body="{}"),
                        response=Response(body=f"data: {n}\n\n", code=200, status="200 OK")),
            Timing(n, "0" * 16, 1.0, [2.0], 3.0))


def record(writer: CassetteWriter) -> int:
    interaction, timing = item(writer.reserve_id())
    return writer.append(interaction, timing)


@pytest.fixture
def folders(tmp_path):
    inside, outside = tmp_path / "recordings", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    return inside, outside


def _assert_refused(error: CassetteError, side: str, inside) -> None:
    message = str(error)
    assert message.startswith(str(inside / SIDE_FILES[side])) and "\n" not in message
    assert "remove it" in message


@pytest.mark.parametrize("when", ["before", "while recording"])
@pytest.mark.parametrize("side", list(SIDE_FILES))
def test_a_symlinked_side_file_is_refused_and_the_outside_file_untouched(folders, side, when):
    inside, outside = folders
    target = outside / "precious.txt"
    target.write_bytes(b"precious\n")
    link = inside / SIDE_FILES[side]
    path = inside / "c.yaml"
    if when == "before":
        link.symlink_to(target)
        with pytest.raises(CassetteError, match="is a symlink") as caught:
            record(CassetteWriter(path, INDENT4_COMPACT, fresh=False))
    else:
        writer = CassetteWriter(path, INDENT4_COMPACT, fresh=True)
        record(writer)
        record(writer)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        before = path.read_bytes()
        with pytest.raises(CassetteError, match="is a symlink") as caught:
            record(writer)
        assert path.read_bytes() == before
    _assert_refused(caught.value, side, inside)
    assert target.read_bytes() == b"precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


@pytest.mark.parametrize("side", list(SIDE_FILES))
def test_a_dangling_symlink_creates_nothing_outside(folders, side):
    inside, outside = folders
    (inside / SIDE_FILES[side]).symlink_to(outside / "new.txt")
    writer = None
    with pytest.raises(CassetteError, match="is a symlink"):
        writer = CassetteWriter(inside / "c.yaml", INDENT4_COMPACT, fresh=True)
        record(writer)
        record(writer)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("side", ["sidecar", "lock"])
def test_a_hard_linked_side_file_is_refused(folders, side):
    inside, outside = folders
    target = outside / "precious.txt"
    target.write_bytes(b"precious\n")
    writer = CassetteWriter(inside / "c.yaml", INDENT4_COMPACT, fresh=True)
    record(writer)
    (inside / SIDE_FILES[side]).unlink()
    os.link(target, inside / SIDE_FILES[side])
    with pytest.raises(CassetteError, match="hard link"):
        record(writer)
    assert target.read_bytes() == b"precious\n"


def test_a_cassette_deleted_while_recording_is_started_again(folders, caplog):
    inside, _ = folders
    path = inside / "c.yaml"
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=True)
    for _ in range(3):
        record(writer)
    in_flight = writer.reserve_id()  # a request that started before the deletion
    path.unlink()  # git clean
    with caplog.at_level(logging.WARNING, logger="vcr-proxy"):
        assert record(writer) == 0
        assert record(writer) == 1
        interaction, timing = item(in_flight)
        assert writer.append(interaction, timing) == 2  # after the new ones, not id 3
    cassette = load(path)
    assert [i.id for i in cassette.interactions] == [0, 1, 2]
    assert path.read_text() == cassette.dumps()
    assert sorted(read_sidecar(sidecar_path(path))) == [0, 1, 2]
    notes = [r.getMessage() for r in caplog.records if "deleted while recording" in r.getMessage()]
    assert len(notes) == 1 and str(path) in notes[0]


def test_a_folder_deleted_while_recording_is_made_again(folders, caplog):
    inside, _ = folders
    path = inside / "suite" / "c.yaml"
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=False)
    record(writer)
    record(writer)
    shutil.rmtree(inside)  # rm -rf recordings
    with caplog.at_level(logging.WARNING, logger="vcr-proxy"):
        for _ in range(3):
            record(writer)
    cassette = load(path)
    assert [i.id for i in cassette.interactions] == [0, 1, 2]
    assert path.read_text() == cassette.dumps()
    assert sum("deleted while recording" in r.getMessage() for r in caplog.records) == 1


def test_deleting_again_and_again_while_another_writer_appends(folders):
    """Two writers (two lock holders, as two processes would be) and repeated deletions:
    whatever survives loads, in Go's bytes, with unique ids."""
    inside, _ = folders
    path = inside / "c.yaml"
    writers = [CassetteWriter(path, INDENT4_COMPACT, fresh=False) for _ in range(2)]
    for round_number in range(10):
        for writer in writers:
            record(writer)
        if round_number % 3 == 2:
            shutil.rmtree(inside) if round_number % 2 else path.unlink()
    cassette = load(path)
    ids = [i.id for i in cassette.interactions]
    assert len(ids) == len(set(ids)) and path.read_text() == cassette.dumps()
