"""How gopkg.in/yaml.v3 reads a plain (unquoted) scalar: as a string, or as another type.

Go's encoder quotes a string exactly when its plain form would read back as something else
(`resolve` in resolve.go, plus YAML 1.1 base-60 floats and booleans in encode.go). The decoder
uses the same rules for unquoted values. Both depend on Go's strconv and time.Parse, whose
acceptance rules are reproduced here: the edge cases ("1e400" stays a string, "0b+1" is an
int, "2001-2-30" is a string) are what the differential tests against Go exercise.
"""

from __future__ import annotations

import math
import re

_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
    "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
}
_OLD_BOOLS = frozenset(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
                        "n", "N", "no", "No", "NO", "off", "Off", "OFF"))
_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
# Go's readFloat for base 10, before its underscore check: digits (and '_') with at most one
# dot, at least one digit, then an optional exponent.
_GO_DECIMAL_FLOAT = re.compile(r"[+-]?([0-9_]*)(?:\.([0-9_]*))?(?:[eE][+-]?[0-9][0-9_]*)?\Z")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)
_HINT_MAP = frozenset("yYnNtTfFoO~")

NULL, BOOL, STR, INT, FLOAT, TIMESTAMP = "!!null", "!!bool", "!!str", "!!int", "!!float", "!!timestamp"


def plain_is_string(s: str) -> bool:
    """Whether yaml.v3's encoder may write `s` unquoted (encode.go `stringv`)."""
    return resolve(s)[0] == STR and not is_base60_float(s) and s not in _OLD_BOOLS


def is_base60_float(s: str) -> bool:
    if not s or not (s[0] in "+-" or "0" <= s[0] <= "9") or ":" not in s:
        return False
    return _BASE60_FLOAT.match(s) is not None


def resolve(s: str) -> tuple[str, object]:
    """Go's resolve("", s): the tag and value an unquoted scalar reads as."""
    hint = "N" if s == "" else s[0]
    if hint in "+-":
        hint = "S"
    elif "0" <= hint <= "9":
        hint = "D"
    elif hint in _HINT_MAP or hint == "N" and s == "":
        hint = "M"
    elif hint != ".":
        return STR, s
    if s in _NULLS:
        return NULL, None
    if s in _BOOLS:
        return BOOL, _BOOLS[s]
    if s in _SPECIAL_FLOATS:
        return FLOAT, _SPECIAL_FLOATS[s]
    if hint == "M":
        return STR, s
    if hint == ".":
        f = parse_float(s)
        return (FLOAT, f) if f is not None else (STR, s)
    if parse_timestamp(s):
        return TIMESTAMP, s
    plain = s.replace("_", "")
    for parsed in (parse_int(plain, 0, _INT64), parse_int(plain, 0, _UINT64, signed=False)):
        if parsed is not None:
            return INT, parsed
    if _YAML_STYLE_FLOAT.match(plain):
        f = parse_float(plain)
        if f is not None:
            return FLOAT, f
    for prefix, base in (("0b", 2), ("0o", 8)):
        if plain.startswith(prefix):
            parsed = parse_int(plain[2:], base, _INT64)
            if parsed is None:
                parsed = parse_int(plain[2:], base, _UINT64, signed=False)
            if parsed is not None:
                return INT, parsed
        elif plain.startswith("-" + prefix):
            parsed = parse_int("-" + plain[3:], base, _INT64)
            if parsed is not None:
                return INT, parsed
    return STR, s


def parse_int(s: str, base: int, bounds: tuple[int, int], signed: bool = True) -> int | None:
    """strconv.ParseInt / ParseUint on a string without underscores; None where Go errs."""
    negative = False
    if signed and s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    if base == 0:
        base = 10
        if s[:1] == "0":
            prefix = s[1:2].lower()
            if prefix in ("x", "o", "b"):
                base, s = {"x": 16, "o": 8, "b": 2}[prefix], s[2:]
            elif len(s) > 1:
                base, s = 8, s[1:]
    if not s or any(c not in _DIGITS[base] for c in s):
        return None
    value = -int(s, base) if negative else int(s, base)
    return value if bounds[0] <= value <= bounds[1] else None


def _underscore_ok(s: str) -> bool:
    saw = "^"
    if s[:1] in ("+", "-"):
        s = s[1:]
    hex_digits = False
    i = 0
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hex_digits = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if "0" <= c <= "9" or hex_digits and "a" <= c.lower() <= "f":
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_float(s: str) -> float | None:
    """strconv.ParseFloat(s, 64) for the decimal forms resolve() can reach; None on error."""
    match = _GO_DECIMAL_FLOAT.match(s)
    if not match or not re.search("[0-9]", (match[1] or "") + (match[2] or "")):
        return None
    if "_" in s and not _underscore_ok(s):
        return None
    value = float(s.replace("_", ""))
    return None if math.isinf(value) else value


def _getnum(s: str, i: int) -> tuple[int, int] | None:
    if i >= len(s) or not "0" <= s[i] <= "9":
        return None
    if i + 1 < len(s) and "0" <= s[i + 1] <= "9":
        return int(s[i:i + 2]), i + 2
    return int(s[i]), i + 1


def _go_atoi(s: str) -> int | None:
    if s[:1] in ("+", "-"):
        s = s[1:]
    return 0 if s and s.isascii() and s.isdigit() else None


def _days_in(month: int, year: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def parse_timestamp(s: str) -> bool:
    """yaml.v3's parseTimestamp: does time.Parse accept `s` in one of its four layouts?"""
    if len(s) < 5 or not s[:4].isascii() or not s[:4].isdigit() or s[4] != "-":
        return False
    return any(_parse_layout(s, sep) for sep in ("T", "t", " ", None))


def _parse_layout(s: str, separator: str | None) -> bool:
    """time.Parse with "2006-1-2" + separator + "15:4:5.999999999" (+ "Z07:00" unless ' ')."""
    year = int(s[:4])
    month_at = _getnum(s, 5)
    if month_at is None:
        return False
    month, i = month_at
    if i >= len(s) or s[i] != "-":
        return False
    day_at = _getnum(s, i + 1)
    if day_at is None:
        return False
    day, i = day_at
    if not 1 <= month <= 12:
        return False
    if separator is not None:
        if separator == " ":
            if i < len(s) and s[i] != " ":
                return False
            while i < len(s) and s[i] == " ":
                i += 1
        elif i >= len(s) or s[i] != separator:
            return False
        else:
            i += 1
        fields = []
        for n, limit in enumerate((24, 60, 60)):
            if n:
                if i >= len(s) or s[i] != ":":
                    return False
                i += 1
            got = _getnum(s, i)
            if got is None or got[0] >= limit:
                return False
            fields.append(got[0])
            i = got[1]
        if i + 1 < len(s) and s[i] in ".," and "0" <= s[i + 1] <= "9":
            digits = 0
            while digits < 9 and i + 1 + digits < len(s) and "0" <= s[i + 1 + digits] <= "9":
                digits += 1
            i += 1 + digits
        if separator != " ":
            if i < len(s) and s[i] == "Z":
                i += 1
            else:
                zone = s[i:i + 6]
                if len(zone) < 6 or zone[3] != ":" or zone[0] not in "+-":
                    return False
                if _go_atoi(zone[1:3]) is None or _go_atoi(zone[4:6]) is None:
                    return False
                i += 6
    if i != len(s):
        return False
    return 1 <= day <= _days_in(month, year)
