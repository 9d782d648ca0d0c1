"""Free worker slots, indexed so that matching never scans all the workers.

A connected worker (``Worker``) is in one of three states:

- FULL: no free slot. It is in no structure; a credit makes it READY.
- READY: free slots, and maybe something to run. Every READY worker sits in one heap,
  ``_ready``, ordered by the strategy's ``worker_key`` (most free slots first, least
  recently served first, ...): the next worker to serve is its top, O(log n).
- STARVING: free slots, but when it was last served nothing it may run was ready. It
  sits in one heap per *kind* of job it may run, ``_starving[kind]``, and nowhere else,
  so a worker waiting for another queue costs nothing while jobs flow, and a job that
  arrives wakes the best eligible worker (back to READY) in O(log n).

A kind is ``(queue, task)``. A worker that announced tasks T on queues Q is registered
under ``(q, t)`` for every q in Q and t in T; one that announced no tasks (an old worker,
or a test that builds credits by hand: "unknown, may run anything") under ``(q, ANY)``;
and every worker under ``(q, "")``, the kind of a job that names no task. That fan-out,
|Q| x (|T| + 1), is paid when a worker joins, leaves or starts starving, never per
assignment; ``_cover`` counts the connected workers per kind with the same keys, which
tells whether any worker at all could run a kind of job.

The heaps use lazy deletion: an entry is ``(key, version, worker)`` and is live only
while the worker is still in that state with that version. Moving a worker bumps its
version instead of searching the heaps; a heap is rebuilt when stale entries outnumber
live ones, so each entry costs O(1) amortized to drop.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

ANY = None  # the task of a worker that announced none: it may run any task
Kind = tuple[str, str | None]

FULL, READY, STARVING, IN_TURN, GONE = range(5)

# Stale heap entries tolerated before a rebuild (plus as many as there are live ones).
SLACK = 256


@dataclass(slots=True, eq=False)
class Worker:
    """What the strategy knows of one worker: its queues and tasks, and its free slots."""

    peer: bytes
    name: str
    queues: tuple[str, ...]
    tasks: frozenset[str]
    slots: int
    credit: int = 0
    joined: int = 0  # join order: ties go to the worker that came first
    served_at: int = 0  # the turn that last gave it a job (round-robin serves the oldest)
    state: int = FULL
    version: int = 0
    key: tuple[Any, ...] = ()
    kinds: tuple[Kind, ...] = ()


# The entries of the heaps: (worker key, worker version, worker).
Entry = tuple[tuple[Any, ...], int, Worker]


def kinds_of(queues: Iterable[str], tasks: frozenset[str]) -> tuple[Kind, ...]:
    """The kinds a worker is registered under (see the module docstring)."""
    kinds: list[Kind] = []
    for queue in queues:
        kinds.append((queue, ""))
        if tasks:
            kinds.extend((queue, task) for task in sorted(tasks))
        else:
            kinds.append((queue, ANY))
    return tuple(kinds)


def wakers_of(queue: str, task: str) -> tuple[Kind, ...]:
    """The kinds whose workers may run a job of ``task`` on ``queue``."""
    return ((queue, ""),) if not task else ((queue, task), (queue, ANY))


class WorkerIndex:
    def __init__(self, key: Callable[[Worker], tuple[Any, ...]]) -> None:
        self.key = key
        self.workers: dict[bytes, Worker] = {}
        self._joined = 0
        self._ready: list[Entry] = []
        self.ready_count = 0
        self._starving: dict[Kind, list[Entry]] = {}
        self.starving_count = 0
        self._starving_live = 0  # live entries in all the starving heaps
        self._starving_entries = 0  # live and stale
        self._cover: Counter[Kind] = Counter()

    # ------------------------------------------------------------ dispatcher's news

    def credit(
        self,
        peer: bytes,
        name: str,
        queues: tuple[str, ...],
        tasks: frozenset[str],
        slots: int,
        credit: int,
    ) -> None:
        """``credit`` slots of this worker are free (again); a new worker joins."""
        worker = self.workers.get(peer)
        if "" in tasks:  # not a task name; never build a new set per credit otherwise
            tasks = tasks - {""}
        if worker is not None:
            # A credit that names no queues or no tasks leaves the worker's as they were
            # (a credit for a finished job need not repeat them); other ones mean it said
            # hello again differently: index it afresh.
            queues, tasks = queues or worker.queues, tasks or worker.tasks
            if worker.queues != queues or (worker.tasks is not tasks and worker.tasks != tasks):
                credit += worker.credit
                self.remove(peer)
                worker = None
        if worker is None:
            self._joined += 1
            worker = Worker(peer, name, queues, tasks, slots, joined=self._joined)
            worker.kinds = kinds_of(queues, tasks)
            self._cover.update(worker.kinds)
            self.workers[peer] = worker
        worker.slots = slots
        self.give_back(peer, credit)

    def give_back(self, peer: bytes, credit: int) -> None:
        worker = self.workers.get(peer)
        if worker is None or credit <= 0:
            return
        worker.credit = min(worker.slots, worker.credit + credit)
        if worker.credit:
            self._make_ready(worker)

    def remove(self, peer: bytes) -> None:
        worker = self.workers.pop(peer, None)
        if worker is None:
            return
        self._leave_state(worker)
        worker.state = GONE
        self._cover.subtract(worker.kinds)
        for kind in worker.kinds:
            if self._cover[kind] <= 0:
                del self._cover[kind]

    def covered(self, queue: str, task: str) -> bool:
        """Whether any connected worker may run a job of ``task`` on ``queue``."""
        return any(kind in self._cover for kind in wakers_of(queue, task))

    def hungry(self) -> int:
        """Workers with free slots."""
        return self.ready_count + self.starving_count

    # ------------------------------------------------------------------ matching

    def next_ready(self) -> Worker | None:
        """The READY worker to serve next, taken out of the heap (IN_TURN) until
        ``end_turn``; None when no worker is READY."""
        heap = self._ready
        while heap:
            _, version, worker = heapq.heappop(heap)
            if worker.state == READY and worker.version == version:
                self.ready_count -= 1
                worker.state = IN_TURN
                return worker
        return None

    def end_turn(self, worker: Worker, exhausted: bool) -> None:
        """After a worker's turn: FULL, STARVING (``exhausted``: nothing left it may
        run), or back in the READY heap under its new key."""
        worker.state = FULL
        if not worker.credit:
            return
        if exhausted:
            self._starve(worker)
        else:
            self._make_ready(worker)

    def wake(self, kinds: tuple[Kind, ...]) -> bool:
        """Make the best STARVING worker registered under one of ``kinds`` READY."""
        best: list[Entry] | None = None
        for kind in kinds:
            heap = self._starving.get(kind)
            if not heap:
                continue
            while heap and not _live_starving(heap[0]):
                heapq.heappop(heap)
                self._starving_entries -= 1
            if heap and (best is None or heap[0] < best[0]):
                best = heap
        if best is None:
            return False
        worker = heapq.heappop(best)[2]
        self._starving_entries -= 1
        self._make_ready(worker)
        return True

    # ------------------------------------------------------------------ states

    def _leave_state(self, worker: Worker) -> None:
        if worker.state == READY:
            self.ready_count -= 1
        elif worker.state == STARVING:
            self.starving_count -= 1
            self._starving_live -= len(worker.kinds)
        worker.state = FULL
        worker.version += 1  # its heap entries are stale from now on

    def _make_ready(self, worker: Worker) -> None:
        key = self.key(worker)
        if worker.state == READY and key == worker.key:
            return  # its entry in the heap is still right
        self._leave_state(worker)
        worker.state, worker.key = READY, key
        self.ready_count += 1
        heapq.heappush(self._ready, (key, worker.version, worker))
        if len(self._ready) > 2 * self.ready_count + SLACK:
            self._ready = [e for e in self._ready if e[2].state == READY and e[1] == e[2].version]
            heapq.heapify(self._ready)

    def _starve(self, worker: Worker) -> None:
        self._leave_state(worker)
        worker.state, worker.key = STARVING, self.key(worker)
        self.starving_count += 1
        entry = (worker.key, worker.version, worker)
        for kind in worker.kinds:
            heapq.heappush(self._starving.setdefault(kind, []), entry)
        self._starving_live += len(worker.kinds)
        self._starving_entries += len(worker.kinds)
        if self._starving_entries > 2 * self._starving_live + SLACK:
            self._compact_starving()

    def _compact_starving(self) -> None:
        live: dict[Kind, list[Entry]] = {}
        for kind, heap in self._starving.items():
            kept = [e for e in heap if _live_starving(e)]
            if kept:
                heapq.heapify(kept)
                live[kind] = kept
        self._starving = live
        self._starving_entries = self._starving_live


def _live_starving(entry: Entry) -> bool:
    return entry[2].state == STARVING and entry[1] == entry[2].version
