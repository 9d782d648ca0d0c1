"""Jobs a worker holds the lease of and has not started yet (``--prefetch``).

A worker with ``prefetch`` P and ``concurrency`` C announces C + P slots: the scheduler
leases it up to C + P jobs, and it runs at most C at once. The others wait here, in the
order they were assigned, and the next one starts as soon as a slot frees, instead of a
round trip to the scheduler and one of its commits later. With short jobs that round trip
is most of a slot's time; with long ones prefetch only holds jobs another worker could
start sooner, so it is off (0) by default, as with Celery's ``worker_prefetch_multiplier``
set to 1.

A waiting job is held like a running one, and the guarantees are the same:
- its lease is listed in every heartbeat, so it is renewed; the heartbeat also names it in
  ``waiting``, so the scheduler counts the job's timeout backstop from now, not from the
  assignment (``WorkerConn.postpone``);
- it starts only while its lease is valid by the worker's own clock (``Runners.start``
  checks the deadline), and one that lapses while waiting is dropped, never run and
  never reported, its slot given back (self-fencing, as for an Assign read too late);
- a ``StopJob`` for it (cancelled, re-leased, overdue) takes it out: it never runs, and
  its report is the same failure a handler stopped at once would give;
- a draining worker gives its waiting jobs back at once: they are no longer held, so the
  next heartbeats and the Goodbye do not list them and the scheduler re-queues them as
  never started (no attempt counted) for other workers to run now.
"""

from __future__ import annotations

from collections import OrderedDict

from transport import protocol as wire


class Prefetched(OrderedDict[int, wire.Assignment]):
    """The waiting assignments by job id, oldest first; taken out by job id in O(1). An
    OrderedDict itself, so the agent's per-job ``if waiting`` and ``len`` are C calls."""

    def add(self, assignment: wire.Assignment) -> None:
        self[assignment.job_id] = assignment

    def next(self) -> wire.Assignment:
        """The oldest waiting assignment, taken out."""
        return self.popitem(last=False)[1]

    def take(self, job_id: int) -> wire.Assignment | None:
        """Take job ``job_id`` out (None: it is not waiting)."""
        return self.pop(job_id, None)

    def ids(self) -> list[int]:
        """The waiting jobs, as a heartbeat names them."""
        return list(self)

    def take_all(self) -> list[int]:
        """Take every waiting job out; their ids."""
        ids = list(self)
        self.clear()
        return ids
