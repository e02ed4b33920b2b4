"""Control selections from careless or hostile test runners: every body that is not a JSON
object naming a cassette gets a ControlError (a 400) with one line saying what is expected."""

from __future__ import annotations

import json
import random

import pytest

from proxy_addon.control import ControlError, parse_selection

from . import scaled, seeded

MODES = ("once", "replay", "record", "new-episodes", "passthrough")

BAD = [b"[]", b"null", b"5", b"-1.5e3", b'"x"', b"true", b"false", b"[{\"name\": \"a\"}]",
       b"{", b"\xff\xfe", b"{\"name\": null}", b"{\"name\": 5}", b"{\"name\": \"\"}",
       b"{\"name\": \"  \"}", b"{\"name\": [\"a\"]}", b"{\"name\": {}}", b"{\"name\": \"a\\u0000\"}",
       b"{\"name\": \"a\", \"mode\": 5}", b"{\"name\": \"a\", \"mode\": [\"once\"]}",
       b"{\"name\": \"a\", \"mode\": {\"x\": 1}}", b"{\"name\": \"a\", \"mode\": \"ONCE\"}",
       b"{\"name\": \"a\", \"cassette\": \"b\"}", b"{\"nmae\": \"a\"}",
       b"[" * 100000 + b"]" * 100000, b"{\"a\":" * 100000 + b"1" + b"}" * 100000]


@pytest.mark.parametrize("body", BAD, ids=lambda b: repr(b[:30]))
def test_bad_bodies_are_one_line_control_errors(body):
    with pytest.raises(ControlError) as caught:
        parse_selection(body, MODES)
    message = str(caught.value)
    assert message and "\n" not in message and len(message) < 300


def test_good_bodies_still_select():
    assert parse_selection(b'{"name": "suite/test", "mode": "once"}', MODES) == ("suite/test", "once")
    assert parse_selection(b'{"name": "suite/test"}', MODES) == ("suite/test", None)
    assert parse_selection(b'{"name": "t", "mode": null}', MODES) == ("t", None)


def test_the_message_says_what_is_expected():
    for body in (b"[]", b"null", b"5", b'"x"', b"true"):
        with pytest.raises(ControlError, match=r"must be a JSON object like \{\"name\""):
            parse_selection(body, MODES)
    with pytest.raises(ControlError, match="unknown field 'cassette'"):
        parse_selection(b'{"name": "a", "cassette": "b"}', MODES)


def test_random_json_values_never_escape_as_other_exceptions():
    rng = random.Random(seeded(13))
    atoms = [None, True, False, 0, -7, 3.5, "", "x", "once", "record", "a/b"]

    def value(depth: int):
        kind = rng.randrange(4 if depth < 4 else 1)
        if kind == 0:
            return rng.choice(atoms)
        if kind == 1:
            return [value(depth + 1) for _ in range(rng.randrange(3))]
        keys = ["name", "mode", "x", "Name"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(3))}

    for _ in range(scaled(2000)):
        body = json.dumps(value(0)).encode()
        try:
            name, mode = parse_selection(body, MODES)
        except ControlError as error:
            assert "\n" not in str(error)
        else:
            assert isinstance(name, str) and name and (mode is None or mode in MODES)
