"""Go's time.Duration text: `String()` and `time.ParseDuration`, on integer nanoseconds."""

from __future__ import annotations

_UNITS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_MAX = 1 << 63


class DurationError(ValueError):
    pass


def _fraction(value: int, digits: int) -> tuple[str, int]:
    """Go's fmtFrac: the fractional part of value / 10**digits, trailing zeros dropped."""
    whole, frac = divmod(value, 10 ** digits)
    text = f"{frac:0{digits}d}".rstrip("0")
    return ("." + text if text else ""), whole


def format_duration(ns: int) -> str:
    """time.Duration.String(): `0s`, `850ns`, `755.667µs`, `1m18.00699275s`, `2h0m0.5s`."""
    u = -ns if ns < 0 else ns
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fraction(u, 3)
            text = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _fraction(u, 6)
            text = f"{whole}{frac}ms"
    else:
        frac, seconds = _fraction(u, 9)
        text = f"{seconds % 60}{frac}s"
        minutes = seconds // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours:
                text = f"{hours}h{text}"
    return "-" + text if ns < 0 else text


def parse_duration(text: str) -> int:
    """time.ParseDuration, raising DurationError with Go's message where Go refuses."""
    invalid = DurationError(f'time: invalid duration "{text}"')
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise invalid
        i = 0
        whole = 0
        while i < len(s) and "0" <= s[i] <= "9":
            if whole > _MAX // 10:
                raise invalid
            whole = whole * 10 + ord(s[i]) - 48
            if whole > _MAX:
                raise invalid
            i += 1
        before = i > 0
        s = s[i:]
        frac, scale, after = 0, 1.0, False
        if s[:1] == ".":
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if frac > (_MAX - 1) // 10:
                        overflow = True
                    else:
                        nxt = frac * 10 + ord(s[i]) - 48
                        if nxt > _MAX:
                            overflow = True
                        else:
                            frac, scale = nxt, scale * 10
                i += 1
            after = i > 0
            s = s[i:]
        if not before and not after:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise DurationError(f'time: missing unit in duration "{text}"')
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(f'time: unknown unit "{unit_name}" in duration "{text}"')
        if whole > _MAX // unit:
            raise invalid
        whole *= unit
        if frac > 0:
            whole += int(float(frac) * (float(unit) / scale))
            if whole > _MAX:
                raise invalid
        total += whole
        if total > _MAX:
            raise invalid
    if negative:
        return -total
    if total > _MAX - 1:
        raise invalid
    return total
