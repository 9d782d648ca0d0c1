"""The strategy interface: ready jobs, free worker slots, and which job goes to which slot.

A strategy answers the strategy actor's one question, ``match()``: the assignments
(job, worker) to propose now. It holds

- the ready jobs, per queue and, within a queue, per task (``QueueJobs``): one
  container per (queue, task) in the subclass's order (FIFO, or priority with aging),
  so a job that no worker can run waits without blocking the jobs behind it;
- the workers' free slots (``strategies.index.WorkerIndex``): READY workers in one heap
  by ``worker_key``, workers with nothing to run parked by the kinds of job they may run.

``match`` serves the top READY worker: it takes up to ``per_turn`` jobs it may run
(``pop(queues, tasks)``), then goes back in the heap under its new key, or is FULL, or
STARVING when nothing it may run is left. A job that arrives wakes the best STARVING
worker that may run it. So every step of the loop either assigns a job or parks a worker
that some earlier event (a credit, a job's arrival) put in the heap: O(log n) per
assignment amortized, whatever the number of workers and queues. A worker connected to
an idle queue is visited once, then costs nothing while it waits.

Across the queues a worker serves, ``pop`` is weighted-fair: it takes from the queue
that has received the least service relative to its weight (start-time fair queuing)
among those holding a job the worker may run, so a flood on one queue cannot starve
another that shares the same workers, and weights split the share (``heavy=1,light=3``).
A queue that was idle starts level with the least-served busy one (a heap of the busy
queues' service, refreshed lazily). Within a queue, the order is the subclass's; across
the tasks the worker may run, the container whose next job ranks first wins. ``pop``
costs O(log n) plus O(q) in the queues the worker serves and O(k) in the distinct tasks
waiting in them that it may run (both a handful).
"""

from __future__ import annotations

import abc
import heapq
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

from actors.scheduler.messages import ReadyJob
from strategies.gates import Gates
from strategies.index import Kind, Worker, WorkerIndex, wakers_of


class ReadyQueue(Protocol):
    """One (queue, task)'s ready jobs, in the order the strategy serves them."""

    def push(self, job: ReadyJob, order: int) -> None:
        """``order`` counts pushes across the strategy: arrival order between containers."""

    def rank(self, now: float) -> tuple[Any, ...]:
        """Where the job ``pop(now)`` would hand out stands: the smallest rank goes first."""

    def pop(self, now: float) -> ReadyJob: ...
    def __len__(self) -> int: ...

    def oldest(self) -> ReadyJob:
        """The job here that arrived first (what waited longest); the container is not
        empty. O(1) amortized: the status asks it of every container, every second."""


def _band_of(priority: int) -> int:
    return 0 if priority > 0 else 1 if priority == 0 else 2


class QueueJobs:
    """One queue's ready jobs: ``waiting`` holds a container per task that has some."""

    __slots__ = ("bands", "name", "size", "waiting")

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiting: dict[str, ReadyQueue] = {}
        self.size = 0
        self.bands = [0, 0, 0]  # ready jobs [high, normal, low]

    def first_for(self, tasks: frozenset[str], now: float) -> ReadyQueue | None:
        """The container holding the next job for a worker that may run ``tasks`` (empty:
        anything), or None. A job that names no task may go to any worker."""
        waiting = self.waiting
        if len(waiting) == 1:  # the usual case: one task waiting
            for task, jobs in waiting.items():
                return jobs if not tasks or not task or task in tasks else None
        candidates: Iterable[ReadyQueue]
        if not tasks:
            candidates = waiting.values()
        elif len(tasks) < len(waiting):  # look up the fewer names
            candidates = [waiting[t] for t in tasks if t in waiting]
            if "" in waiting:
                candidates.append(waiting[""])
        else:
            candidates = [jobs for task, jobs in waiting.items() if not task or task in tasks]
        best, best_rank = None, None
        for jobs in candidates:
            rank = jobs.rank(now)
            if best_rank is None or rank < best_rank:
                best, best_rank = jobs, rank
        return best


class Strategy(abc.ABC):
    name: ClassVar[str]

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = weights or {}
        self.workers = WorkerIndex(self.worker_key)
        self._queues: dict[str, QueueJobs] = {}
        self._served: dict[str, float] = {}  # service received / weight, per queue
        self._busy: list[tuple[float, str]] = []  # (service, queue) of non-empty queues
        self._in_busy: set[str] = set()
        self._size = 0
        self._order = 0  # pushes so far
        self._seq_hi = 0  # the largest seq pushed or given to a released job
        self._turns = 0  # worker turns so far (round-robin's clock)
        self._dirty: set[Kind] = set()  # kinds whose arrival woke a worker since the match
        self.gates = Gates(self.held_rank)  # concurrency keys and rate limits

    @abc.abstractmethod
    def new_queue(self) -> ReadyQueue:
        """An empty container for one (queue, task)'s ready jobs."""

    def now(self) -> float:
        """The time the containers rank by (priority aging); others need none."""
        return 0.0

    def held_rank(self, job: ReadyJob) -> int:
        """Where a job held at a gate stands among the others held there, before its
        arrival order (``ReadyJob.order``): FIFO goes by arrival alone."""
        return 0

    # ---------------------------------------------------------------- jobs

    def push(self, job: ReadyJob) -> None:
        self._order += 1
        job.order = self._order
        if job.seq > self._seq_hi:
            self._seq_hi = job.seq
        gates = self.gates
        if (job.concurrency_key or gates.rated) and gates.hold_new(job):
            return  # held at its key or limit: released into the queues in its place
        self._add(job)

    def release(self, jobs: list[ReadyJob]) -> None:
        """Jobs a gate held go back to the ready queues as new arrivals (behind the jobs
        waiting there, within their priority): a key at its cap cannot take each slot its
        own jobs free ahead of other keys' jobs. Among one gate's jobs, the order held."""
        for job in jobs:
            self._order += 1
            job.order = self._order
            self._seq_hi += 1
            job.seq = self._seq_hi  # the tie-break among equal priorities (see priority)
            self._add(job)

    def _add(self, job: ReadyJob) -> None:
        queue = self._queues.get(job.queue)
        if queue is None:
            queue = self._queues[job.queue] = QueueJobs(job.queue)
        if not queue.size:
            self._level(job.queue)
        jobs = queue.waiting.get(job.task)
        if jobs is None:  # (an empty one is dropped: task names come from clients)
            jobs = queue.waiting[job.task] = self.new_queue()
        jobs.push(job, job.order)
        queue.size += 1
        queue.bands[_band_of(job.priority)] += 1
        self._size += 1
        if self.workers.starving_count and self.workers.wake(wakers_of(job.queue, job.task)):
            self._dirty.add((job.queue, job.task))

    def _level(self, name: str) -> None:
        """A queue that was idle starts level with the least-served busy one, not with
        credit for the time it was empty (which would let it starve the others)."""
        busy, served = self._busy, self._served
        while busy:
            service, queue = busy[0]
            if not self._queues[queue].size:
                heapq.heappop(busy)
                self._in_busy.discard(queue)
            elif service != served[queue]:  # served since: refresh (once per pop at most)
                heapq.heapreplace(busy, (served[queue], queue))
            else:
                break
        served[name] = max(served.get(name, 0.0), busy[0][0] if busy else 0.0)
        if name not in self._in_busy:
            heapq.heappush(busy, (served[name], name))
            self._in_busy.add(name)

    def pop(self, queues: tuple[str, ...], tasks: frozenset[str] = frozenset()) -> ReadyJob | None:
        """The next job for a worker serving ``queues`` that may run ``tasks`` (empty:
        anything), from the least-served queue holding one."""
        now = self.now()
        served = self._served
        best: QueueJobs | None = None
        best_jobs: ReadyQueue | None = None
        best_served = 0.0
        for name in queues:
            queue = self._queues.get(name)
            if queue is None or not queue.size:
                continue
            service = served[name]
            if best is not None and service >= best_served:
                continue
            jobs = queue.first_for(tasks, now)
            if jobs is not None:
                best, best_jobs, best_served = queue, jobs, service
        if best is None or best_jobs is None:
            return None
        job = best_jobs.pop(now)
        if not len(best_jobs):
            del best.waiting[job.task]
        served[best.name] = best_served + 1.0 / self.weights.get(best.name, 1.0)
        best.size -= 1
        best.bands[_band_of(job.priority)] -= 1
        self._size -= 1
        return job

    def __len__(self) -> int:
        return self._size

    def oldest(self) -> dict[str, ReadyJob]:
        """Per queue holding ready jobs, the one that arrived first (of its containers'
        ``oldest``, the longest waiting): O(containers), never O(jobs)."""
        found: dict[str, ReadyJob] = {}
        for name, queue in self._queues.items():
            firsts = [jobs.oldest() for jobs in queue.waiting.values() if len(jobs)]
            if firsts:
                found[name] = min(firsts, key=lambda job: (job.enqueued_at, job.order))
        return found

    def depth(self) -> dict[str, int]:
        """Ready jobs per queue."""
        return {name: q.size for name, q in self._queues.items()}

    def bands(self) -> dict[str, tuple[int, int, int]]:
        """Ready jobs per queue by priority band: (high > 0, normal = 0, low < 0)."""
        return {name: (q.bands[0], q.bands[1], q.bands[2]) for name, q in self._queues.items()}

    def waiting_for_worker(self) -> dict[str, int]:
        """Ready jobs per queue that no connected worker may run: none serving the queue
        announced their task (and none announced an empty task set)."""
        covered = self.workers.covered
        return {
            name: sum(len(jobs) for task, jobs in q.waiting.items() if not covered(name, task))
            for name, q in self._queues.items()
        }

    # ------------------------------------------------------------- workers

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
        self.workers.credit(peer, name, queues, tasks, slots, credit)

    def give_back(self, peer: bytes, credit: int) -> None:
        """A proposed assignment did not happen: the slot is free again."""
        self.workers.give_back(peer, credit)

    def remove_worker(self, peer: bytes) -> None:
        self.workers.remove(peer)

    def worker_key(self, worker: Worker) -> tuple[Any, ...]:
        """The order READY workers are served in, smallest first. Default: the one with
        most free slots (it fills a whole frame), the earliest joined on a tie. A key
        must end with something unique to the worker (``joined``): heap entries of two
        workers never tie."""
        return (-worker.credit, worker.joined)

    def per_turn(self, worker: Worker) -> int:
        """Jobs a worker takes in one turn. Default: all its free slots (one frame)."""
        return worker.credit

    def match(self, now: float | None = None) -> list[tuple[int, bytes]]:
        """Assignments (job_id, peer) to propose now: until no READY worker is left or no
        job is, then once more for each kind of job whose arrival woke a worker that
        took another job instead (so no job is left behind while a worker that may run
        it starves). ``now`` (the gates' clock, read once by the caller): the instant
        every token this match takes is taken at, which the caller records as the
        picks' start; None reads the clock at each token."""
        picks: list[tuple[int, bytes]] = []
        workers = self.workers
        while True:
            while self._size and (worker := workers.next_ready()) is not None:
                self._turn(worker, picks, now)
            if not self._dirty:
                break
            if not self._size:
                self._dirty.clear()
                break
            kind = next(iter(self._dirty))
            queue, task = kind
            jobs = self._queues[queue].waiting if queue in self._queues else {}
            if task not in jobs or not workers.wake(wakers_of(queue, task or "")):
                self._dirty.discard(kind)
        return picks

    def _turn(self, worker: Worker, picks: list[tuple[int, bytes]], now: float | None) -> None:
        wanted = max(1, min(worker.credit, self.per_turn(worker)))
        got = 0
        gates = self.gates
        while got < wanted:
            job = self.pop(worker.queues, worker.tasks)
            if job is None:
                break
            if (job.concurrency_key or gates.rated) and not gates.admit(job, now):
                continue  # held at its key or limit; the next job may go
            picks.append((job.job_id, worker.peer))
            got += 1
        if got:
            worker.credit -= got
            self._turns += 1
            worker.served_at = self._turns
        # Short of jobs with none left at all, it stays READY: the loop stops anyway, and
        # the next job most likely is one it may run (no parking and waking per job).
        self.workers.end_turn(worker, exhausted=got < wanted and self._size > 0)
