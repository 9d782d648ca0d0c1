"""A second task module for end-to-end tests: a worker started with it has ``etl.extract``
and nothing else (a worker started with ``tests.helpers.ledger_tasks`` lacks it). Each
execution is written to the same ledger, in the same format, as ``ledger_tasks`` does."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from actors.worker import context, task


def _event(kind: str, value: Any) -> None:
    directory = os.environ.get("CORRAL_LEDGER_DIR")
    if not directory:
        return
    ctx = context()
    entry = {
        "event": kind,
        "job": ctx.job_id,
        "token": ctx.token,
        "attempt": ctx.attempt,
        "at": time.time(),
        "pid": os.getpid(),
        "worker": ctx.worker,
        "value": value,
    }
    with open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@task(name="etl.extract")
def extract(value: Any = None) -> Any:
    _event("start", value)
    _event("end", value)
    return value
