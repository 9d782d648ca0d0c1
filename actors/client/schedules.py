"""Schedule descriptions on the client side (issue 17): ``schedule_spec`` builds and checks
one before a byte is sent, so a bad name, cron expression, time zone or interval is refused
locally with one clear line (RequestRefused, code ``invalid``), as the scheduler would.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from actors.client.specs import job_spec
from actors.errors import RequestRefused
from actors.firetimes import problem
from transport import protocol as wire

# wire.ScheduleName's rule, checked here to say it in words.
NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def schedule_spec(
    name: str,
    task: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    cron: str | None = None,
    every: float | datetime.timedelta | None = None,
    tz: str = "UTC",
    missed: str = "latest",
    no_overlap: bool = False,
    **options: Any,
) -> wire.ScheduleSpec:
    """A schedule named ``name`` that runs ``task(*args, **kwargs)`` at each fire time of
    ``cron`` (5 fields, or 6 with seconds first, read in time zone ``tz``) or ``every``
    so many seconds (a whole number, or a ``timedelta``). ``missed``: "latest", "all" or
    "skip" (see the README's Schedules section); ``no_overlap``: skip a fire time while
    the previous one's job has not ended. ``options`` are ``job_spec``'s (priority,
    queue, max_retries, timeout, backoff). Raises RequestRefused (``invalid``)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RequestRefused(
            "invalid", f"schedule name {name!r}: give 1 to 128 letters, digits, _ . or -"
        )
    seconds: int | None = None
    if every is not None:
        value = every.total_seconds() if isinstance(every, datetime.timedelta) else every
        if value != int(value) or value < 1:
            why = f"every must be a whole number of seconds, 1 or more, not {value}"
            raise RequestRefused("invalid", f"schedule {name}: {why}")
        seconds = int(value)
    try:
        job = job_spec(task, args, kwargs, **options)
        spec = wire.ScheduleSpec(name, job, cron, seconds, tz, missed, no_overlap)  # type: ignore[arg-type]
        # The protocol's own checks (name, sizes, policy), as the scheduler will run them.
        msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=wire.ScheduleSpec)
    except (TypeError, msgspec.ValidationError) as exc:
        raise RequestRefused("invalid", f"schedule {name}: {exc}") from None
    trouble = problem(spec, time.time())
    if trouble is not None:
        raise RequestRefused("invalid", f"schedule {name}: {trouble}")
    return spec
