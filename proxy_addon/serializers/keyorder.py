"""The order in which yaml.v3 writes the keys of a Go map (sorter.go `keyList.Less`).

Runs of digits compare as numbers, and letters sort after other characters except right after
a digit. Keys of a Go map are unique, so any correct sort gives Go's order.
"""

from __future__ import annotations

from functools import cmp_to_key


def _is_digit(c: str) -> bool:
    return c.isdecimal()


def _is_letter(c: str) -> bool:
    return c.isalpha()


def _wrap64(n: int) -> int:
    """Go's int64 arithmetic: long digit runs overflow and wrap around."""
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def go_less(a: str, b: str) -> bool:
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = _is_digit(ca)
            continue
        letter_a, letter_b = _is_letter(ca), _is_letter(cb)
        if letter_a and letter_b:
            return ca < cb
        if letter_a or letter_b:
            return letter_a if digits else letter_b
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and _is_digit(a[j]):
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and _is_digit(a[ai]):
            an = _wrap64(an * 10 + ord(a[ai]) - 48)
            ai += 1
        bi = i
        while bi < len(b) and _is_digit(b[bi]):
            bn = _wrap64(bn * 10 + ord(b[bi]) - 48)
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _compare(a: str, b: str) -> int:
    return -1 if go_less(a, b) else (1 if go_less(b, a) else 0)


_GO_KEY = cmp_to_key(_compare)


def go_sorted(keys) -> list[str]:
    """Keys in yaml.v3's order."""
    keys = list(keys)
    # With only ASCII letters and '-', Go's order is code-point order: '-' sorts before letters
    # in both, and there are no digit runs. Header names nearly always take this path.
    if all(k.isascii() and k.replace("-", "").isalpha() for k in keys):
        return sorted(keys)
    return sorted(keys, key=_GO_KEY)
