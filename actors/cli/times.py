"""Times as people type them on the command line and in job files: durations ("30s",
"5m", "1h30m", "1.5", "2d") and instants (ISO 8601, "2026-12-01T09:00:00Z"), turned into
seconds and Unix times. Each raises ValueError with a message saying what was expected.
"""

from __future__ import annotations

import datetime
import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number of seconds, or number+unit parts (ms s m h d)."""
    spelled = text.strip().lower().replace(" ", "")
    try:
        seconds = float(spelled)
    except ValueError:
        parts = _PART.findall(spelled)
        if not parts or "".join(n + u for n, u in parts) != spelled:
            raise ValueError(f"a duration such as 30, 30s, 5m, 1h30m or 2d, got {text!r}") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration of 0 or more seconds, got {text!r}")
    return seconds


def parse_time(text: str) -> float:
    """The Unix time of an ISO 8601 ``text``; without a time zone, this machine's local
    time (as ``date`` shows it)."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"an ISO 8601 time such as 2026-12-01T09:00:00Z or 2026-12-01 09:00, got {text!r}"
        ) from None
    return when.timestamp()


# The protocol's bounds on a time a request names (transport.payloads' UnixTime).
EARLIEST, LATEST = 0.0, 4_102_444_800.0  # 1970 to 2100


def parse_when(text: str, now: float) -> float:
    """The Unix time of ``text``: an ISO 8601 time, or a duration meaning that long
    before ``now`` ("1h": an hour ago), within 1970 to 2100."""
    try:
        when = parse_time(text)
    except ValueError:
        try:
            when = now - parse_duration(text)
        except ValueError:
            raise ValueError(
                f"a time (2026-12-01T09:00:00Z) or how long ago (30m, 2d), got {text!r}"
            ) from None
    if not EARLIEST <= when <= LATEST:
        raise ValueError(f"a time between 1970 and 2100, got {text!r}")
    return when
