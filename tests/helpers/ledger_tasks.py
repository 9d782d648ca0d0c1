"""Tasks the tests run on real worker processes. Each execution is recorded in a ledger
outside corral ($CORRAL_LEDGER_DIR/<pid>.jsonl): job id, fencing token, start, end, pid,
worker name, so tests count executions independently of the scheduler's bookkeeping."""

from __future__ import annotations

import json
import os
import time

from actors.worker import context, task

_files: dict[int, object] = {}


def _record(entry: dict[str, object]) -> None:
    directory = os.environ.get("CORRAL_LEDGER_DIR")
    if not directory:
        return
    pid = os.getpid()
    with open(os.path.join(directory, f"{pid}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _run(seconds: float, value: object) -> object:
    ctx = context()
    start = time.time()
    if seconds:
        time.sleep(seconds)
    _record(
        {
            "job": ctx.job_id,
            "token": ctx.token,
            "start": start,
            "end": time.time(),
            "pid": os.getpid(),
            "worker": ctx.worker,
            "value": value,
        }
    )
    return value


@task(name="record")
def record(value: object = None, seconds: float = 0.0) -> object:
    return _run(seconds, value)


@task(name="fail_until")
def fail_until(attempts_to_fail: int) -> int:
    ctx = context()
    _record(
        {
            "job": ctx.job_id,
            "token": ctx.token,
            "start": time.time(),
            "end": time.time(),
            "pid": os.getpid(),
            "worker": ctx.worker,
            "attempt": ctx.attempt,
        }
    )
    if ctx.attempt <= attempts_to_fail:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return ctx.attempt


def read_ledger(directory: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".jsonl"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                entries += [json.loads(line) for line in f if line.strip()]
    return entries
