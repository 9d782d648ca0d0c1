"""How a worker leaves: drain on the first SIGINT/SIGTERM, stop at once on the second.

Draining tells the scheduler to send nothing more and waits (at most the worker's
``drain_timeout``) until every held job has finished and its result is acknowledged. A
second signal, or the timeout, stops the handlers that are left without reporting them
(their results would be fake: a stopped handler did not fail) and says Goodbye while
still holding their leases, so the scheduler records those attempts as "worker stopped"
and runs the jobs again elsewhere. ``Worker.abandoned`` lists them (the CLI exits 1).

A worker whose only scheduler now serves another database (``leave_old_work``) leaves
the same way at once: what it holds means other jobs there; so does one whose hello is
refused for its key's role (``frame_refused``): no scheduler will ever serve it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from typing import Any, Protocol

from actors.link import Link
from actors.worker.leases import Leases
from actors.worker.outbox import Outbox
from actors.worker.prefetch import Prefetched
from transport import protocol as wire

log = logging.getLogger("corral.worker")


class Worker(Protocol):
    """What leaving needs of ``actors.worker.agent.Worker`` (a Protocol, so this module does not
    import the worker and the two do not form an import circle)."""

    running: dict[int, Any]
    drain_timeout: float
    abandoned: list[int]
    leases: Leases
    outbox: Outbox
    abandon: asyncio.Event
    link: Link

    def send(self, message: wire.Message) -> None: ...

    @property
    def name(self) -> str: ...

    waiting: Prefetched

    def stop_job(self, job_id: int, reason: str) -> None: ...

    def stop(self) -> None: ...

    async def run(self) -> None: ...


async def drain(w: Worker) -> None:
    """Stop taking work, finish what we hold (at most ``drain_timeout``), leave."""
    if w.running:  # WARNING: the default level; Ctrl-C must not look ignored for 30 s
        log.warning(
            "draining: finishing %d job(s), at most %gs (signal again to stop at once)",
            len(w.running),
            w.drain_timeout,
        )
    w.send(wire.Drain())
    # Prefetched, never started: no longer held, so the scheduler re-queues them for other
    # workers as never started (``actors.worker.prefetch``).
    for job_id in w.waiting.take_all():
        w.leases.forget(job_id)
    deadline = time.monotonic() + w.drain_timeout
    # Polled: it also ends on a deadline or a second signal, once per worker lifetime.
    # Held covers a sync job whose launch waits for the next loop turn (not running yet).
    while (w.running or w.leases.held or w.outbox.unacked) and not w.abandon.is_set():
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    if w.running:
        w.outbox.closed = True  # their results would be fake: none is sent
        w.abandoned = sorted(w.running)
        why = "second stop signal" if w.abandon.is_set() else "drain timed out"
        log.warning(
            "%s: stopping %d unfinished job(s) %s; the scheduler reclaims them",
            why,
            len(w.abandoned),
            ", ".join(map(str, w.abandoned)),
        )
        for job_id in w.abandoned:
            w.stop_job(job_id, "worker stopped")
    w.outbox.flush()  # finished results first: the Goodbye must follow them
    w.send(wire.Goodbye(w.leases.listed()))
    await asyncio.sleep(0.05)  # let the frame leave before the socket closes


def claims(w: Worker) -> list[tuple[int, int]]:
    """What a (re)connecting hello claims: jobs held (running or prefetched), and finished
    jobs whose results the scheduler has not acknowledged yet (resent right after)."""
    unacked = [(r.job_id, r.token) for r in w.outbox.unacked.values()]
    return w.leases.listed() + unacked


def held_work(w: Worker) -> list[int]:
    """Jobs the worker runs, and jobs whose results are not acknowledged yet."""
    return sorted({*w.leases.held, *w.outbox.unacked})


def frame_refused(w: Worker, code: str, text: str) -> None:
    """A frame the scheduler refused. Our hello refused for our key's role (a client key
    given to a worker) can never be served: said once, and the worker leaves (the CLI
    exits 1), instead of saying hello, and logging the refusal, once a second for ever."""
    if code != "forbidden" or w.link.welcomed.is_set():
        log.error("scheduler refused a frame: %s: %s", code, text)
        return
    if not w.link.refused:
        w.link.refused = text
        log.error("worker %s: the scheduler refuses our key: %s; exiting", w.name, text)
        w.stop()
        w.stop()


def leave_old_work(w: Worker, why: str) -> None:
    """The worker's only scheduler now serves another database (``why``): the jobs it
    holds from the old one are other jobs there. They are stopped, their results dropped,
    and the worker exits (1) for its supervisor to start it afresh."""
    held = held_work(w)
    log.error(
        "worker %s: %s; stopping job(s) %s from the database served before and exiting "
        "(start the worker again to work for this one)",
        w.name,
        why,
        ", ".join(map(str, held)),
    )
    w.outbox.closed = True  # their results would go to other jobs
    w.abandoned = held
    w.stop()
    w.stop()


async def serve(worker: Worker) -> None:
    """Run a worker until SIGINT/SIGTERM (drain), or a second one (stop at once)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    # Imports and task modules live for good: keep them out of GC scans. The thresholds
    # stay Python's (unlike the scheduler's, ``runtime.settle_gc``): handlers' cyclic
    # garbage (a caught exception keeps its frames, and their buffers, in a cycle) would
    # wait 70 times as long to be freed.
    gc.freeze()
    await worker.run()
