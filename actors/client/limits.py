"""Rate limits on the client side (issue 17): ``set_limit_request`` builds and checks a
``SetLimit`` before a byte is sent, so a bad rate is refused locally with one clear line
(RequestRefused, code ``invalid``). Rates are read by ``actors.rates``.
"""

from __future__ import annotations

from actors.errors import RequestRefused
from actors.rates import MAX_COUNT, default_burst, parse_rate
from transport import protocol as wire

__all__ = ["default_burst", "parse_rate", "set_limit_request"]


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
