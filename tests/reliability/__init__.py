"""The reliability suite. `make test` runs it at scale 1 with fixed seeds; `make reliability`
runs it larger (VCR_RELIABILITY_SCALE) with a new seed each time (VCR_RELIABILITY_SEED),
both shown in pytest's header so a failure can be run again."""

from __future__ import annotations

import os

SCALE = int(os.environ.get("VCR_RELIABILITY_SCALE", "1"))
SEED = int(os.environ.get("VCR_RELIABILITY_SEED", "0"))


def scaled(count: int) -> int:
    return count * SCALE


def seeded(seed: int) -> int:
    """A test's own fixed seed, varied by VCR_RELIABILITY_SEED."""
    return seed + SEED
