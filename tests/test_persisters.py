"""Cassette files on disk: appends at constant cost, torn appends repaired, nothing overwritten."""

from __future__ import annotations

import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
from proxy_addon.errors import CassetteError
from proxy_addon.persisters.filesystem import CassetteWriter
from proxy_addon.serializers.emitter import INDENT2_COMPACT, INDENT4, INDENT4_COMPACT
from proxy_addon.timing import Timing, read_sidecar, sidecar_path


def interaction(n: int) -> tuple[Interaction, Timing]:
    return (Interaction(id=n, request=Request(url=f"https://openrouter.ai/{n}", method="POST",
                                              body='{"n": %d}' % n),
                        response=Response(body=f"data: {n}\n\n", code=200, status="200 OK")),
            Timing(n, "0" * 16, 1.0, [2.0], 3.0))


@pytest.mark.parametrize("layout", [INDENT4, INDENT4_COMPACT, INDENT2_COMPACT], ids=lambda l: l.name)
def test_appended_file_is_what_go_writes_for_the_whole_cassette(tmp_path, layout):
    path = tmp_path / "c.yaml"
    writer = CassetteWriter(path, layout, fresh=True)
    for _ in range(3):
        writer.append(*interaction(writer.reserve_id()))
    cassette = load(path)
    assert [i.id for i in cassette.interactions] == [0, 1, 2]
    assert path.read_text() == Cassette(interactions=cassette.interactions).dumps(layout)
    assert sorted(read_sidecar(sidecar_path(path))) == [0, 1, 2]


def test_new_episodes_continue_ids_and_keep_the_files_layout(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(Cassette(interactions=[interaction(0)[0], interaction(1)[0]]).dumps(INDENT2_COMPACT))
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=False)
    writer.append(*interaction(writer.reserve_id()))
    cassette = load(path)
    assert [i.id for i in cassette.interactions] == [0, 1, 2]
    assert cassette.layout == INDENT2_COMPACT
    assert path.read_text() == cassette.dumps()


def test_a_torn_append_is_cut_back_by_the_next_writer(tmp_path):
    path = tmp_path / "c.yaml"
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=True)
    writer.append(*interaction(writer.reserve_id()))
    good = path.read_bytes()
    # What a kill in the middle of an append leaves: the marker, and half an interaction.
    marker = tmp_path / ".c.yaml.appending"
    marker.write_text(str(len(good)))
    with open(path, "ab") as stream:
        stream.write(b"  - id: 1\n    request:\n        body: '{\"unterminated")
    with pytest.raises(CassetteError):
        load(path)
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=False)
    assert path.read_bytes() == good and not marker.exists()
    writer.append(*interaction(writer.reserve_id()))
    assert [i.id for i in load(path).interactions] == [0, 1]


def test_a_file_that_does_not_load_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("version: 2\ninteractions: [\n")
    for fresh in (True, False):
        with pytest.raises(CassetteError, match="refusing to record over a cassette that does not load"):
            CassetteWriter(path, INDENT4_COMPACT, fresh=fresh)
    assert path.read_text() == "version: 2\ninteractions: [\n"


def test_a_hand_formatted_cassette_is_refused_not_rewritten_by_an_append(tmp_path):
    """An append never rewrites a file: one not in Go's bytes is refused, untouched, until
    `vcr-proxy fmt` has made it Go's (then it is appended to as usual)."""
    path = tmp_path / "c.yaml"
    text = (Cassette(interactions=[interaction(0)[0]]).dumps(INDENT4).replace("---\n", "")
            .replace("version: 2", "version:    2"))
    path.write_text(text)
    with pytest.raises(CassetteError, match=r"not in the bytes Go writes.*vcr-proxy fmt"):
        CassetteWriter(path, INDENT4_COMPACT, fresh=False)
    assert path.read_text() == text
    path.write_text(load(path).dumps())
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=False)
    writer.append(*interaction(writer.reserve_id()))
    cassette = load(path)
    assert len(cassette.interactions) == 2 and path.read_text() == cassette.dumps(INDENT4)


@pytest.mark.parametrize("body, finished", [
    (b"data: {}\n\ndata: [DONE]\n\n", True),
    (b"data: {}\r\n\r\ndata: [DONE]\r\n\r\n", True),
    (b'event: message_stop\ndata: {"type":"message_stop"}\n\n', True),
    (b'event: response.completed\ndata: {"type":"response.completed"}\n\n', True),
    (b"data: {}\n\n", False),
    (b"data: [DONE]\n", False),
    (b"data: [DONE]\n\ndata: more\n\n", False),
])
def test_a_stream_is_finished_only_after_its_final_event(body, finished):
    from proxy_addon.recorder import stream_is_finished

    assert stream_is_finished(body) is finished


@pytest.mark.parametrize("position", ["first", "appended"])
def test_saving_a_long_stream_does_not_copy_its_body(tmp_path, position):
    """The recorder's copy of a stream is the only one: turning it into an interaction and
    writing it (whole file or append) takes memory for a batch, not for the body again."""
    import tracemalloc

    from proxy_addon.recorder import Exchange, to_interaction

    event = b'data: {"choices": [{"delta": {"content": "' + "tok\u00e9n ".encode() * 200 + b'"}}]}\n\n'
    body = bytearray(event * (16_000_000 // len(event)))
    path = tmp_path / "c.yaml"
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=True)
    if position == "appended":
        writer.append(*interaction(writer.reserve_id()))
    exchange = Exchange(method="POST", url="https://openrouter.ai/api/v1/chat/completions",
                        request_headers=[("content-type", "application/json")], request_body=b"{}",
                        http_version="HTTP/1.1", status_code=200, reason="OK",
                        response_headers=[("content-type", "text/event-stream")],
                        response_body=body, started=0.0, headers_at=0.1, ended=1.0,
                        arrivals=[(len(body), 1.0)])
    tracemalloc.start()
    try:
        writer.append(*to_interaction(exchange, writer.reserve_id()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(body) / 2, f"saving took {peak / len(body):.2f}x the body"
    saved = load(path).interactions[-1].response.body
    assert saved == body.decode()


def test_appends_with_turns_land_in_turn_order_whatever_their_threads_do(tmp_path):
    """The recorder takes a turn when an exchange ends and appends from a thread: threads
    that reach append in another order still write in turn order, and a turn given up (its
    interaction could not be built) lets the next one go."""
    import threading
    import time

    path = tmp_path / "c.yaml"
    writer = CassetteWriter(path, INDENT4_COMPACT, fresh=True)
    ids = [writer.reserve_id() for _ in range(6)]
    turns = [writer.take_turn() for _ in ids]
    threads = []
    for n in reversed(range(6)):  # the last exchange's thread first
        if n == 3:
            threads.append(threading.Thread(target=writer.end_turn, args=(turns[n],)))
        else:
            threads.append(threading.Thread(target=writer.append,
                                            args=(*interaction(ids[n]), turns[n])))
        threads[-1].start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert [i.id for i in load(path).interactions] == [0, 1, 2, 4, 5]
    writer.end_turn(turns[2])  # a turn ended twice (a cancelled save whose thread ran) is harmless
    assert writer.append(*interaction(writer.reserve_id()), writer.take_turn()) == 6
