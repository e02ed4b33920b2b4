"""One cassette, many writers: real processes (pytest-xdist workers each run a proxy) append
to one file at once, in record and new-episodes mode, with bodies up to 3 MB. Every
interaction is kept, ids are unique, and the file is Go's bytes (`vcr-proxy fmt --check`)."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
from pathlib import Path

import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
from proxy_addon.persisters.filesystem import CassetteWriter
from proxy_addon.serializers.emitter import INDENT2_COMPACT, INDENT4_COMPACT, LAYOUTS
from proxy_addon.timing import Timing, read_sidecar, sidecar_path

from . import scaled, seeded

WORKERS = 4
PER_WORKER = scaled(12)
BIG = 3 << 20


def make(worker: int, n: int, big: bool) -> tuple[Interaction, Timing]:
    body = f"data: {json.dumps({'worker': worker, 'n': n})}\n\n"
    if big:
        body += "data: " + "x" * BIG + "\n\n"
    return (Interaction(request=Request(url=f"https://api.openai.com/v1/chat/completions?w={worker}&n={n}",
                                        method="POST", body=json.dumps({"worker": worker, "n": n})),
                        response=Response(body=body, code=200, status="200 OK")),
            Timing(0, "0" * 16, 1.0, [2.0], 3.0))


def worker(path: str, layout: str, fresh: bool, number: int, count: int, big_every: int,
           seed: int, barrier, results) -> None:
    """One process: a writer, then `count` interactions from two threads, in request order
    reserved and completing in any order, as the addon does."""
    writer = CassetteWriter(Path(path), LAYOUTS[layout], fresh)
    barrier.wait(60)
    rng = random.Random(seed)
    written = []
    lock = threading.Lock()

    def run(numbers):
        for n in numbers:
            reserved = writer.reserve_id()
            interaction, timing = make(number, n, big_every and n % big_every == 0)
            interaction.id = reserved
            if rng.random() < 0.3:
                threading.Event().wait(rng.uniform(0, 0.01))
            chosen = writer.append(interaction, timing)
            with lock:
                written.append((n, chosen))

    threads = [threading.Thread(target=run, args=(range(t, count, 2),)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((number, written))


def run_workers(path: Path, layout: str, fresh_for, big_every: int = 0) -> dict[int, list]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [context.Process(target=worker, args=(str(path), layout, fresh_for(number), number,
                                                      PER_WORKER, big_every, seeded(number), barrier,
                                                      results))
                 for number in range(WORKERS)]
    for process in processes:
        process.start()
    collected = dict(results.get(timeout=600) for _ in processes)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    return collected


def check(path: Path, written: dict[int, list], old: int) -> Cassette:
    cassette = load(path)  # duplicate ids would fail here
    assert path.read_bytes() == cassette.dumps().encode()  # `vcr-proxy fmt --check` is clean
    ids = [i.id for i in cassette.interactions]
    assert len(set(ids)) == len(ids)
    found = {}
    for interaction in cassette.interactions[old:]:
        data = json.loads(interaction.request.body)
        found[(data["worker"], data["n"])] = interaction.id
    expected = {(number, n): chosen for number, pairs in written.items() for n, chosen in pairs}
    assert found == expected  # every interaction, under the id its writer reported
    assert len(cassette.interactions) == old + WORKERS * PER_WORKER
    timings = read_sidecar(sidecar_path(path))
    assert set(ids[old:]) <= set(timings)
    return cassette


def seed_cassette(path: Path, count: int, layout) -> None:
    interactions = [Interaction(id=n, request=Request(url=f"https://x/{n}", method="GET", body="{}"),
                                response=Response(body="old", code=200, status="200 OK"))
                    for n in range(count)]
    path.write_text(Cassette(interactions=interactions).dumps(layout))


@pytest.mark.parametrize("layout", ["indent4-compact", "indent2-compact"])
def test_record_mode_workers_share_one_new_cassette(tmp_path, layout):
    path = tmp_path / "suite" / "c.yaml"
    path.parent.mkdir()
    seed_cassette(path, 5, LAYOUTS[layout])  # last run's: started anew exactly once
    written = run_workers(path, layout, lambda number: True)
    cassette = check(path, written, old=0)
    assert not any(i.response.body == "old" for i in cassette.interactions)


def test_new_episodes_workers_with_3_mb_streams(tmp_path):
    path = tmp_path / "c.yaml"
    seed_cassette(path, 3, INDENT2_COMPACT)
    written = run_workers(path, "indent4-compact", lambda number: False, big_every=4)
    cassette = check(path, written, old=3)
    assert [i.id for i in cassette.interactions[:3]] == [0, 1, 2]
    assert cassette.layout == INDENT2_COMPACT
    assert sum(len(i.response.body) > BIG for i in cassette.interactions) == WORKERS * len(range(0, PER_WORKER, 4))


def test_record_and_new_episodes_writers_at_once(tmp_path):
    path = tmp_path / "c.yaml"
    written = run_workers(path, "indent4", lambda number: number % 2 == 0, big_every=6)
    check(path, written, old=0)


def test_one_process_keeps_request_order_ids():
    """Ids are reserved at request start: completing out of order keeps them."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        writer = CassetteWriter(path, INDENT4_COMPACT, fresh=True)
        reserved = [writer.reserve_id() for _ in range(3)]
        for n in (2, 0, 1):
            interaction, timing = make(0, n, False)
            interaction.id = reserved[n]
            assert writer.append(interaction, timing) == reserved[n]
        assert [i.id for i in load(path).interactions] == [2, 0, 1]


def test_a_reserved_id_taken_by_another_writer_moves_to_the_next_free(tmp_path):
    path = tmp_path / "c.yaml"
    seed_cassette(path, 2, INDENT4_COMPACT)
    first = CassetteWriter(path, INDENT4_COMPACT, fresh=False)
    second = CassetteWriter(path, INDENT4_COMPACT, fresh=False)  # another lock holder, like a process
    a, b = first.reserve_id(), second.reserve_id()
    assert a == b == 2
    interaction, timing = make(0, 0, False)
    interaction.id = a
    assert first.append(interaction, timing) == 2
    interaction, timing = make(1, 0, False)
    interaction.id = b
    assert second.append(interaction, timing) == 3 == timing.id
    assert second.reserve_id() == 4  # later reservations start after every id seen
    assert [i.id for i in load(path).interactions] == [0, 1, 2, 3]
    assert path.read_text() == load(path).dumps()
