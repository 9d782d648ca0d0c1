"""The body of a process-pool child: runs one handler at a time for its worker agent.

A child must never outlive the lease of the job it runs, even when its agent cannot
tell it to stop (the agent is SIGSTOPped, or hung): the agent keeps the lease's expiry
(CLOCK_MONOTONIC, shared by every process on the machine) in a shared double, renewed on
each acknowledged heartbeat, and a watchdog thread here kills this process the moment
the expiry passes. The child also refuses to start a handler past it.

Messages to the agent: ("ready",) once imported; per job ("started", t) or ("stale",),
then ("progress", fraction, message)..., then ("done", ok, payload, retry).
Imports stay light (the task registry, msgspec): the agent's own modules are not needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from actors.worker.tasks import CURRENT_JOB, REGISTRY, retryable, task_options

EXIT_FENCED = 70  # exit status of a child whose watchdog saw its job's lease lapse
WATCHDOG_EVERY_S = 0.02  # the longest a lapsed lease goes unnoticed while the GIL is free


class _State:
    running = False


def _watchdog(deadline: Any, state: _State, parent: int) -> None:
    while True:
        now = time.monotonic()
        if state.running and now > deadline.value:
            os._exit(EXIT_FENCED)  # no cleanup: the handler must not take one more step
        if os.getppid() != parent:  # our agent (or its fork server) is gone
            os._exit(EXIT_FENCED)
        time.sleep(WATCHDOG_EVERY_S)


def child_main(conn: Connection, deadline: Any, modules: list[str]) -> None:
    for module in modules:
        importlib.import_module(module)
    state = _State()
    threading.Thread(
        target=_watchdog, args=(deadline, state, os.getppid()), name="lease-watchdog", daemon=True
    ).start()
    conn.send(("ready",))
    while True:
        try:
            task_name, args, kwargs, ctx = conn.recv()
        except EOFError:
            os._exit(0)
        now = time.monotonic()
        if now > deadline.value:
            conn.send(("stale",))
            continue
        state.running = True
        conn.send(("started", now))
        conn.send(_run(conn, task_name, args, kwargs, ctx))
        state.running = False


def _run(
    conn: Connection, task_name: str, args: list[Any], kwargs: dict[str, Any], ctx: Any
) -> Any:
    relay = dataclasses.replace(ctx, reporter=lambda f, m: conn.send(("progress", f, m)))
    token = CURRENT_JOB.set(relay)
    try:
        value = REGISTRY[task_name](*args, **kwargs)
        if asyncio.iscoroutine(value):
            value = asyncio.run(value)
    except Exception as exc:
        retry = retryable(task_options(task_name), exc, ctx.attempt)
        return ("done", False, traceback.format_exc(), retry)
    finally:
        CURRENT_JOB.reset(token)
    try:
        return ("done", True, msgspec.msgpack.encode(value), True)
    except (TypeError, ValueError, OverflowError) as exc:
        text = f"the result of {task_name} cannot be encoded: {exc}"
        return ("done", False, text, False)
