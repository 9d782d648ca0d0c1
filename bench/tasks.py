"""The bench's task: a no-op that records each execution's job id, independently of corral.

Ids are kept in memory and written to $CORRAL_BENCH_DIR/<pid>.ids when the worker exits
cleanly (the bench stops workers with SIGTERM, which drains them first).
"""

from __future__ import annotations

import atexit
import os
from array import array

from actors.worker import context, task

_executed = array("q")


@task(name="bench.noop")
async def noop() -> None:
    _executed.append(context().job_id)


def _dump() -> None:
    directory = os.environ.get("CORRAL_BENCH_DIR")
    if directory:
        with open(os.path.join(directory, f"{os.getpid()}.ids"), "wb") as f:
            _executed.tofile(f)


atexit.register(_dump)
