"""The bench's tasks: a no-op that records each execution (job id and start time)
independently of corral, a short one that does the same and then waits, and a ledgered
one for chaos runs.

The no-op keeps its records in memory and writes them to $CORRAL_BENCH_DIR/<pid>.ids and
<pid>.starts when the worker exits cleanly (the bench stops workers with SIGTERM, which
drains them first).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from array import array

from actors import context, task

_executed = array("q")
_started = array("d")


@task(name="bench.noop")
async def noop() -> None:
    _executed.append(context().job_id)
    _started.append(time.time())


@task(name="bench.nap")
async def nap(ms: float) -> None:
    """A short job: recorded as the no-op is, then ``ms`` milliseconds awaited."""
    _executed.append(context().job_id)
    _started.append(time.time())
    await asyncio.sleep(ms / 1000)


def _dump() -> None:
    directory = os.environ.get("CORRAL_BENCH_DIR")
    if directory:
        with open(os.path.join(directory, f"{os.getpid()}.ids"), "wb") as f:
            _executed.tofile(f)
        with open(os.path.join(directory, f"{os.getpid()}.starts"), "wb") as f:
            _started.tofile(f)


atexit.register(_dump)


# How often a long ledgered job writes a line: the bound on how late its last sign of life
# can be from the moment it really stopped (bench/chaos.py uses the same figure).
TICK_S = 0.01


def _ledger_line(kind: str) -> None:
    """One unbuffered line per event, so a SIGKILL loses nothing already written."""
    ctx = context()
    line = f"{kind} {ctx.job_id} {ctx.token} {time.time():.6f} {os.getpid()} {os.getppid()}\n"
    directory = os.environ.get("CORRAL_BENCH_DIR", ".")
    fd = os.open(
        os.path.join(directory, f"{os.getpid()}.ledger"),
        os.O_WRONLY | os.O_APPEND | os.O_CREAT,
        0o644,
    )
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task(name="bench.ledgered")
def ledgered(seconds: float = 0.0) -> int:
    """Record this execution outside corral: ``start``, a ``tick`` every 10 ms while it works,
    then ``end``, or ``exit`` when it was stopped (self-fencing, cancel). Returns the token."""
    _ledger_line("start")
    finished = False
    try:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, TICK_S))
            if left > TICK_S:
                _ledger_line("tick")
        finished = True
    finally:
        _ledger_line("end" if finished else "exit")
    return context().token
