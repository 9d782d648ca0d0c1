"""The execution ledger the test tasks keep outside corral: one JSON line per event of a
handler (start, tick, end...), appended with a single write so a SIGKILL loses nothing
already written. Shared by every task module the tests start workers with."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from actors import context


def event(kind: str, **extra: Any) -> None:
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
        **extra,
    }
    fd = os.open(
        os.path.join(directory, f"{os.getpid()}.jsonl"),
        os.O_WRONLY | os.O_APPEND | os.O_CREAT,
        0o644,
    )
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)
