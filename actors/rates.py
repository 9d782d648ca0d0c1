"""Rates as people write them: ``parse_rate`` reads "100/s", "30/m", "1000/h", and
``default_burst`` says how many may start at once when nobody said. Shared by the client
(``corral limit set``) and ``@task(rate_limit=...)``, without importing either.
"""

from __future__ import annotations

import math
import re

from actors.errors import RequestRefused

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(-?\d+)\s*/\s*([A-Za-z]*)\s*$")
MAX_COUNT = 1_000_000


def parse_rate(rate: str) -> tuple[int, float]:
    """``"100/s"`` -> (100, 1.0): a whole number of jobs per second, minute or hour."""
    match = _RATE.match(rate)
    if match is None:
        raise RequestRefused("invalid", f"rate {rate!r} must look like 100/s, 30/m or 1000/h")
    count, unit = int(match[1]), match[2]
    if unit not in PERIODS:
        raise RequestRefused("invalid", f"rate {rate!r}: unknown unit {unit!r}; use /s, /m or /h")
    if not 1 <= count <= MAX_COUNT:
        raise RequestRefused(
            "invalid", f"rate {rate!r}: the count must be 1 to {MAX_COUNT:,}, got {count}"
        )
    return count, PERIODS[unit]


def default_burst(count: int, period: float) -> int:
    """One second's worth of the rate, at least 1: "100/s" may start 100 at once, "60/m"
    and "1000/h" one at a time, evenly spaced."""
    return max(1, math.floor(count / period))
