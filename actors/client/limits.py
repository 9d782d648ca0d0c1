"""Rate limits on the client side (issue 17): ``parse_rate`` reads "100/s", "30/m",
"1000/h", and ``set_limit_request`` builds and checks a ``SetLimit`` before a byte is sent,
so a bad rate is refused locally with one clear line (RequestRefused, code ``invalid``).
"""

from __future__ import annotations

import math
import re

from actors.errors import RequestRefused
from transport import protocol as wire

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


def set_limit_request(
    request_id: int, name: str, rate: str | tuple[int, float], burst: int | None
) -> wire.SetLimit:
    """A checked ``SetLimit``: ``rate`` as "100/s" or (count, period in seconds)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        raise RequestRefused("invalid", "a limit's name is a task name or key, 1 to 256 characters")
    count, period = parse_rate(rate) if isinstance(rate, str) else rate
    if not (isinstance(count, int) and 1 <= count <= MAX_COUNT and 0 < period <= 86_400):
        raise RequestRefused(
            "invalid", f"rate ({count}, {period}): 1 to 1,000,000 per period of at most a day"
        )
    if burst is None:
        burst = default_burst(count, period)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_COUNT:
        raise RequestRefused(
            "invalid", f"burst must be a whole number from 1 to {MAX_COUNT:,}, got {burst!r}"
        )
    return wire.SetLimit(request_id, name, count, float(period), burst)
