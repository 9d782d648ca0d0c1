"""What the store actor's next commit takes: the writes and reads waiting for it, in arrival
order, and the one reordering the store allows, so that a bulk submission cannot hold back
the leases and results of jobs already durable (issue 19).

Without it, a client submitting 200,000 jobs in frames of 5,000 filled the store's mailbox
with inserts; the leases and results of running jobs queued behind them, one commit of
20,000 inserts (about 140 ms) after another, and the workers sat idle for the 2 to 3 s the
submission took. Now a commit takes the first *bulk* writes (only new jobs: inserts, their
edges and workflows) up to ``BULK_INSERTS_PER_COMMIT`` inserts, and leaves the rest for the
next commits; a later write that changes only jobs older than every insert left behind may
go ahead of them, into this commit.

Why that is safe: a write that goes ahead touches no job whose insert is left behind (its
job ids are all below the lowest such id: ids are handed out in creation order), carries no
new job itself, and so cannot miss a compare-and-swap or refer to a row not yet written.
Every write carrying new jobs keeps its place among the others (the first write that may
not go ahead stops the taking: it and everything after it wait, in order). A read waits for
every write that arrived before it. Each write is still acknowledged only after the commit
that made it durable; the writes of one writer may now be acknowledged out of their order,
each by its own ``Written`` tag.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from actors.config import MAX_BATCH_OPS
from actors.scheduler.messages import Read, Write
from actors.scheduler.ops import Ops

# The inserts of bulk writes one commit takes at most, beyond the first bulk write (always
# taken whole, however large): about 20 ms of inserts on this machine, so a lease waits at
# most that long behind a submission.
BULK_INSERTS_PER_COMMIT = 4_096
# How far past the first write left behind ``take`` looks for writes that may go ahead: a
# flood of single-job submissions leaves thousands behind, and each commit must not scan
# them all.
LOOK_AHEAD = 1_024

_NO_ID = 1 << 62  # above every job id: nothing is left behind


def is_bulk(ops: Ops) -> bool:
    """Only new records (jobs, their edges, their workflow): nothing written before changes."""
    return bool(ops.inserts) and not (
        ops.updates
        or ops.deletes
        or ops.attempts
        or ops.limits
        or ops.limit_states
        or ops.schedules
    )


def may_go_ahead(ops: Ops, lowest_left: int) -> bool:
    """Whether a write may commit before bulk writes left behind whose lowest new job id is
    ``lowest_left``: it creates nothing, and every job it touches is older than that."""
    if ops.inserts or ops.edges or ops.workflows:
        return False
    return (
        all(row[-2] < lowest_left for row in ops.updates)
        and all(job_id < lowest_left for job_id, _status in ops.deletes)
        and all(row[0] < lowest_left for row in ops.attempts)
    )


def _lowest_id(ops: Ops) -> int:
    lowest: int = min(job.id for job in ops.inserts)
    return lowest


class WriteQueue:
    """The store's waiting writes and reads, in arrival order; ``take`` picks the next
    commit's writes and the reads to answer after it."""

    def __init__(self, bulk_budget: int = BULK_INSERTS_PER_COMMIT) -> None:
        self.bulk_budget = bulk_budget
        self.waiting: deque[Write | Read] = deque()
        self.went_ahead = 0  # writes committed ahead of bulk writes left behind
        # The event loop adds while the database thread takes (SQLite's commit chain).
        self._lock = threading.Lock()
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def add(self, message: Write | Read) -> None:
        with self._lock:
            self.waiting.append(message)

    def extend(self, messages: Iterable[Write | Read]) -> None:
        with self._lock:
            self.waiting.extend(messages)

    def close(self) -> None:
        """Give nothing more to ``take`` (the store is stopping: what waits is never
        committed, so never acknowledged)."""
        self.closed = True

    def take(self) -> tuple[list[Write], list[Read]]:
        """The next commit's writes (in the order their effects apply) and the reads whose
        earlier writes they include; what is left waits for the next ``take``. Safe to call
        from another thread than the one adding."""
        with self._lock:
            if self.closed:
                return [], []
            return self._take()

    def _take(self) -> tuple[list[Write], list[Read]]:
        writes: list[Write] = []
        reads: list[Read] = []
        left: deque[Write | Read] = deque()
        lowest_left = _NO_ID
        inserted = n_ops = 0
        waiting = self.waiting
        while waiting and len(left) < LOOK_AHEAD:
            message = waiting.popleft()
            if not isinstance(message, Write):
                (left if left else reads).append(message)
                continue
            ops: Ops = message.ops
            size = len(ops)
            if writes and n_ops + size > MAX_BATCH_OPS:
                waiting.appendleft(message)
                break
            if is_bulk(ops):
                if not left and (not inserted or inserted + len(ops.inserts) <= self.bulk_budget):
                    writes.append(message)
                    inserted += len(ops.inserts)
                    n_ops += size
                else:
                    left.append(message)
                    lowest_left = min(lowest_left, _lowest_id(ops))
            elif not left:
                writes.append(message)
                n_ops += size
            elif may_go_ahead(ops, lowest_left):
                writes.append(message)
                n_ops += size
                self.went_ahead += 1
            else:  # it must follow what is left: so must everything after it
                waiting.appendleft(message)
                break
        left.extend(waiting)
        self.waiting = left
        return writes, reads
