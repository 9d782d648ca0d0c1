"""Tasks the tests run on real worker processes. Each execution is recorded in a ledger
outside corral ($CORRAL_LEDGER_DIR/<pid>.jsonl): a "start" line before the work and an "end"
line after it, each with job id, fencing token, time, pid and worker, written unbuffered so a
SIGKILL loses nothing already written. Tests count executions from it, independently of the
scheduler's bookkeeping."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from actors import context, task
from tests.helpers.ledger import event as _event


@task(name="record")
def record(value: Any = None, seconds: float = 0.0) -> Any:
    """Sleep ``seconds`` in small steps (so a stop lands promptly), return ``value``."""
    _event("start", value=value)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    _event("end", value=value)
    return value


@task(name="token")
def token(seconds: float = 0.0) -> int:
    """Return the fencing token this execution ran under."""
    _event("start")
    time.sleep(seconds)
    _event("end")
    return context().token


@task(name="spin")
def spin(seconds: float) -> int:
    """Hold the GIL in a tight pure-Python loop for ``seconds``."""
    _event("start")
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    _event("end")
    return n


@task(name="fail_until")
def fail_until(attempts_to_fail: int) -> int:
    _event("start")
    _event("end")
    attempt = context().attempt
    if attempt <= attempts_to_fail:
        raise RuntimeError(f"planned failure on attempt {attempt}")
    return attempt


def read_events(directory: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".jsonl"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                events += [json.loads(line) for line in f if line.strip()]
    return events


def read_ledger(directory: str) -> list[dict[str, Any]]:
    """Executions: one entry per start, with its end time (None if it never ended)."""
    runs: dict[tuple[int, int, int], dict[str, Any]] = {}
    for e in sorted(read_events(directory), key=lambda e: e["at"]):
        key = (e["job"], e["token"], e["pid"])
        if e["event"] == "start":
            runs[key] = {**e, "start": e["at"], "end": None}
        elif e["event"] == "end" and key in runs:
            runs[key]["end"] = e["at"]
    return sorted(runs.values(), key=lambda r: r["start"])


def completed(directory: str) -> list[dict[str, Any]]:
    return [r for r in read_ledger(directory) if r["end"] is not None]


@task(name="bait")
def bait(first_seconds: float, later_seconds: float) -> int:
    """Runs long under token 1 (the zombie's), briefly under any later token; returns the token."""
    ctx = context()
    _event("start")
    seconds = first_seconds if ctx.token == 1 else later_seconds
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    _event("end")
    return ctx.token


@task(name="fail_below_token")
def fail_below_token(n: int) -> int:
    """Fails while the fencing token is at most ``n``; tokens keep growing across re-queues."""
    ctx = context()
    _event("start")
    _event("end")
    if ctx.token <= n:
        raise RuntimeError(f"planned failure under token {ctx.token}")
    return ctx.token


@task(name="step")
def step(seconds: float = 0.0, fail_below_token: int = 0) -> dict[str, Any]:
    """A workflow step: records itself, returns its name and its parents' results by step."""
    ctx = context()
    _event("start", step=ctx.step)
    time.sleep(seconds)
    if ctx.token <= fail_below_token:
        _event("end", step=ctx.step, failed=True)
        raise RuntimeError(f"step {ctx.step} fails under token {ctx.token}")
    _event("end", step=ctx.step)
    return {"step": ctx.step, "parents": ctx.steps}


@task(name="progressing")
def progressing(steps: int = 4, seconds: float = 0.4) -> str:
    """Reports progress ``steps`` times over ``seconds``, then succeeds."""
    ctx = context()
    _event("start")
    for i in range(1, steps + 1):
        time.sleep(seconds / steps)
        ctx.progress(i / steps, f"step {i} of {steps}")
        time.sleep(0.3)  # longer than the worker's coalescing interval: every report is sent
    _event("end")
    return "done"


def _ticking(seconds: float) -> Iterator[int]:
    """A "start" line, a "tick" line before each pause its caller takes (20 ms), for
    ``seconds``, then an "end" line; yields the ticks so far."""
    _event("start")
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        _event("tick")
        n += 1
        yield n
    _event("end")


@task(name="scribble")
def scribble(seconds: float) -> int:
    """Writes a "tick" line every 20 ms for ``seconds``: the ledger shows when it stopped."""
    n = 0
    for n in _ticking(seconds):  # noqa: B007 - the last count is the result
        time.sleep(0.02)
    return n


@task(name="ascribble")
async def ascribble(seconds: float) -> int:
    """``scribble`` as an async handler: it runs on the worker's own loop, whatever the pool."""
    n = 0
    for n in _ticking(seconds):  # noqa: B007
        await asyncio.sleep(0.02)
    return n


@task(name="nap")
def nap(seconds: float) -> float:
    """Sleeps in ONE C call (time.sleep): a thread cannot be stopped until it returns."""
    _event("start")
    time.sleep(seconds)
    _event("end")
    return seconds


@task(name="shout")
def shout(chars: int) -> None:
    """Raises an exception whose message is ``chars`` characters long."""
    _event("start")
    raise ValueError("x" * chars)


@task(name="hoard")
def hoard(size: int) -> bytes:
    """Returns ``size`` bytes: more than a frame can carry when big enough."""
    _event("start")
    _event("end")
    return b"\0" * size


@task(name="flaky_io", retry_on=(OSError,), max_retries=2)
def flaky_io(kind: str) -> None:
    """Fails with OSError (worth a retry) or ValueError (not worth one)."""
    _event("start")
    raise OSError("disk busy") if kind == "io" else ValueError("bad input")


@task(name="add")
def add(a: int, b: int) -> int:
    _event("start")
    _event("end")
    return a + b


@task(name="gil_hold")
def gil_hold(seconds: int) -> int:
    """Holds the GIL for ``seconds`` in one C call (libc sleep through ctypes.PyDLL, which
    does not release it): nothing else in this process runs Python meanwhile."""
    import ctypes

    _event("start")
    ctypes.PyDLL(None).sleep(int(seconds))
    _event("end")
    return context().token


@task(name="held")
def held(release: str, first_seconds: float = 60.0, later_seconds: float = 0.1) -> int:
    """Under token 1, writes a "tick" every 20 ms until the file ``release`` exists (at most
    ``first_seconds``); under a later token, for ``later_seconds``. Returns the token."""
    ctx = context()
    _event("start")
    first = ctx.token == 1
    deadline = time.monotonic() + (first_seconds if first else later_seconds)
    while time.monotonic() < deadline and not (first and os.path.exists(release)):
        _event("tick")
        time.sleep(0.02)
    _event("end")
    return ctx.token


@task(name="slow_defaults", priority=7, max_retries=1, backoff=(0.5, 2.0, 5.0))
def slow_defaults() -> str:
    """A task with declared defaults (priority, retries, backoff) for its jobs."""
    _event("start")
    _event("end")
    return "done"


@task(name="stamp")
def stamp(seconds: float = 0.0) -> str | None:
    """Records the idempotency key it runs under (a schedule's job: schedule:NAME:FIRE_TIME)
    at its start and end, ``seconds`` apart."""
    key = context().idempotency_key
    _event("start", key=key)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    _event("end", key=key)
    return key
