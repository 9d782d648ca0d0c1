"""Checks of a job's fields for ``corral submit``, with messages a person can act on
("--max-retries: must be 0 or more, got -1"), read from the wire protocol's own constraints
(``transport.protocol.JobSpec``), so the command line and the scheduler never disagree."""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

import msgspec.inspect as mi

from transport import protocol as wire

_FIELDS: dict[str, mi.Type] = {f.name: f.type for f in mi.type_info(wire.JobSpec).fields}  # type: ignore[attr-defined]
_BACKOFF: list[tuple[str, mi.Type]] = [
    (f.name, f.type)
    for f in mi.type_info(wire.Backoff).fields  # type: ignore[attr-defined]
]
_HELLO: dict[str, mi.Type] = {f.name: f.type for f in mi.type_info(wire.WorkerHello).fields}  # type: ignore[attr-defined]
# Readable spellings of the protocol's string patterns.
_PATTERNS = {r"^[A-Za-z0-9_.:-]+$": "letters, digits and _ . : - only"}


def _number(value: Any) -> str:
    """As written, never in scientific notation for the bounds people meet (a year of
    seconds, a Unix time): ``31622400``, ``0.5``."""
    return format(value, ".15g") if isinstance(value, float) else str(value)


def problem(kind: mi.Type, value: Any) -> str | None:
    """What is wrong with ``value`` for a field of type ``kind``, or None."""
    match kind:
        case mi.UnionType(types=types):
            if value is None and any(isinstance(t, mi.NoneType) for t in types):
                return None
            [inner] = [t for t in types if not isinstance(t, mi.NoneType)]
            return problem(inner, value)
        case mi.IntType() | mi.FloatType():
            whole = isinstance(kind, mi.IntType)
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
                return f"must be {'a whole number' if whole else 'a number'}, got {value!r}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be a finite number, got {value!r}"
            if kind.ge is not None and value < kind.ge:
                return f"must be {_number(kind.ge)} or more, got {_number(value)}"
            if kind.gt is not None and value <= kind.gt:
                return f"must be more than {_number(kind.gt)}, got {_number(value)}"
            if kind.le is not None and value > kind.le:
                return f"must be {_number(kind.le)} or less, got {_number(value)}"
            return None
        case mi.StrType(min_length=low, max_length=high, pattern=pattern):
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
            if low and len(value) < low:
                return "must not be empty"
            if high is not None and len(value) > high:
                return f"must be at most {high} characters, got {len(value)}"
            if pattern is not None and not re.search(pattern, value):
                return f"must be {_PATTERNS.get(pattern, 'like ' + pattern)}, got {value!r}"
            return None
        case mi.ListType(item_type=item):
            if not isinstance(value, list):
                return f"must be a list, got {value!r}"
            for index, element in enumerate(value):
                why = problem(item, element)
                if why is not None:
                    return f"item {index + 1} {why}"
            return None
    return None


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the JobSpec field ``name`` (not args/kwargs)."""
    if name == "backoff":
        return backoff_problem(value)
    why = problem(_FIELDS[name], value)
    if why is not None and name == "run_at" and type(value) in (int, float):
        kind = _FIELDS[name]
        kinds = kind.types if isinstance(kind, mi.UnionType) else (kind,)
        [bounds] = [t for t in kinds if isinstance(t, mi.FloatType)]
        if bounds.le is not None and value > bounds.le:  # a time, shown as one
            return f"must be {_time(bounds.le)} or earlier, got {_time(value)}"
    return why


def _time(unix: float) -> str:
    """A Unix time as an ISO 8601 UTC time, or as the number if it is none."""
    try:
        return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return _number(unix)


def backoff_problem(value: Any) -> str | None:
    """``backoff`` is ``[base, factor, cap]`` or ``{"base": .., "factor": .., "cap": ..}``."""
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != {"base", "factor", "cap"}:
            return "must have the keys base, factor and cap"
        value = [value["base"], value["factor"], value["cap"]]
    if not isinstance(value, list | tuple) or len(value) != 3:
        return f"must be [base, factor, cap], got {value!r}"
    for (name, kind), element in zip(_BACKOFF, value, strict=True):
        why = problem(kind, element)
        if why is not None:
            return f"{name.upper()} {why}"
    base, _factor, cap = value
    if cap < base:  # as --backoff-cap against --backoff-base of the scheduler's own
        return f"CAP ({_number(cap)}) must be at least BASE ({_number(base)})"
    return None


def worker_problem(name: str | None, queues: list[str]) -> str | None:
    """What a worker's hello would be refused for (``--name``, ``--queues``), or None:
    checked before it connects, since the scheduler would refuse it again and again."""
    if not queues:
        return "--queues names no queue"
    if name is not None and (why := problem(_HELLO["name"], name)) is not None:
        return f"--name {why}"
    why = problem(_HELLO["queues"], queues)
    return None if why is None else f"--queues {why}"
