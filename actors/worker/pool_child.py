"""The body of a process-pool child: runs one handler at a time for its worker agent.

A child must never outlive the lease of the job it runs, even when its agent cannot
tell it to stop (the agent is SIGSTOPped, or hung): the agent keeps the lease's expiry
(CLOCK_MONOTONIC, shared by every process on the machine) in a shared double, renewed on
each acknowledged heartbeat. While a handler runs, a kernel timer (``kill_timer``) is
armed just past that expiry and SIGKILLs this process then, even while the process
is stopped (its whole group paused: on SIGCONT its handler thread would otherwise often
take one more step before a watchdog thread could run); a watchdog thread re-arms the
timer when the agent moves the expiry, and exits the process itself where the system
has no such timer. The child also refuses to start a handler past the expiry.

Messages to the agent: ("ready",) once imported; per job ("started", t) or ("stale",),
then ("progress", fraction, message)..., then ("done", ok, payload, retry).
Imports stay light (the task registry, msgspec): the agent's own modules are not needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from actors.worker.kill_timer import KillTimer
from actors.worker.tasks import CURRENT_JOB, REGISTRY, retryable, task_options

EXIT_FENCED = 70  # exit status of a child whose watchdog saw its job's lease lapse
EXIT_TIMED_OUT = 71  # ... saw its job's timeout pass (the agent could not stop it in time)
WATCHDOG_EVERY_S = 0.02  # the longest a lapsed lease goes unnoticed while the GIL is free
# The kernel timer fires this long after the expiry, not at it: the watchdog moves it only
# every WATCHDOG_EVERY_S, and a renewal landing just before the old expiry must reach it in
# time (at the expiry itself, one 13 ms before was killed). The watchdog still exits at the
# expiry; the timer is for a child that cannot run (stopped, its GIL held), and the
# scheduler reclaims only after lease + grace (1 s by default), so it still fires first.
KILL_MARGIN_S = 5 * WATCHDOG_EVERY_S


class _Guard:
    """Whether a handler runs, and the kernel timer armed meanwhile at its lease's expiry or
    its timeout, whichever comes first (None where the system has none); one lock orders
    the main thread's start and end of a handler with the watchdog's re-arming. The agent
    stops a timed-out handler itself; the child's own limit is for when the agent cannot
    run (the worker's whole process group paused past the timeout)."""

    def __init__(self, deadline: Any, armed: Any) -> None:
        self.deadline = deadline
        self.shown = armed  # the expiry armed, for the agent to tell our SIGKILL apart
        self.timer = KillTimer.create()
        self.lock = threading.Lock()
        self.running = False
        self.armed = math.inf
        self.until = math.inf  # the running handler's timeout, by this clock

    def start(self, timeout: float | None) -> None:
        with self.lock:
            self.running = True
            self.until = time.monotonic() + timeout if timeout else math.inf
            self._arm(min(self.deadline.value, self.until))

    def end(self) -> None:
        with self.lock:
            self.running = False
            if self.timer is not None:
                self.timer.disarm()
            self.armed = self.shown.value = math.inf

    def check(self, now: float) -> None:
        """The watchdog's turn: exit if the running handler's lease has lapsed, else follow
        the expiry the agent moved."""
        with self.lock:
            if not self.running:
                return
            expiry = min(self.deadline.value, self.until)
            if now > expiry:  # no cleanup: the handler must not take one more step
                os._exit(EXIT_TIMED_OUT if expiry == self.until else EXIT_FENCED)
            if expiry != self.armed:
                self._arm(expiry)

    def _arm(self, expiry: float) -> None:
        if self.timer is not None:
            fires = expiry + KILL_MARGIN_S
            self.shown.value = fires  # before: the agent must never see a SIGKILL it cannot place
            self.timer.arm(fires)
        self.armed = expiry


def _watchdog(guard: _Guard, parent: int) -> None:
    while True:
        guard.check(time.monotonic())
        if os.getppid() != parent:  # our agent (or its fork server) is gone
            os._exit(EXIT_FENCED)
        time.sleep(WATCHDOG_EVERY_S)


def child_main(conn: Connection, deadline: Any, armed: Any, modules: list[str]) -> None:
    for module in modules:
        importlib.import_module(module)
    guard = _Guard(deadline, armed)
    threading.Thread(
        target=_watchdog, args=(guard, os.getppid()), name="lease-watchdog", daemon=True
    ).start()
    conn.send(("ready",))
    while True:
        try:
            task_name, args, kwargs, ctx, timeout = conn.recv()
        except EOFError:
            os._exit(0)
        now = time.monotonic()
        if now > deadline.value:
            conn.send(("stale",))
            continue
        guard.start(timeout)
        conn.send(("started", now))
        outcome = _run(conn, task_name, args, kwargs, ctx)
        guard.end()  # before the report: a child that reported is never killed for its lease
        conn.send(outcome)


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
