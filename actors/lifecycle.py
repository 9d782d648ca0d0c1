"""The job lifecycle: states and the one transition table every change goes through.

PENDING (waiting on parents or on retry backoff) -> QUEUED (ready) -> RUNNING
(leased to one worker) -> SUCCEEDED; a failure goes back to PENDING while
attempts remain, else to FAILED (the dead-letter queue); a job that can never be
sent (parents' results too large) goes from PENDING to FAILED. CANCELLED and
UPSTREAM_FAILED end the rest. Anything not in ``TRANSITIONS`` is refused here,
with an error naming both states.
"""

from __future__ import annotations

import enum

from actors.errors import IllegalTransition


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"


P, Q, R = JobState.PENDING, JobState.QUEUED, JobState.RUNNING
S, F, C, U = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.UPSTREAM_FAILED

# The members as plain module constants, for the hot path: on Python 3.11 every
# `JobState.RUNNING` is a Python-level descriptor call (~0.1 us), several per job.
PENDING, QUEUED, RUNNING, SUCCEEDED = P, Q, R, S
FAILED, CANCELLED, UPSTREAM_FAILED = F, C, U

TRANSITIONS: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (P, Q),  # parents succeeded, or retry backoff elapsed
        (P, C),  # cancelled before it ever ran
        (P, U),  # a parent ended FAILED / CANCELLED / UPSTREAM_FAILED
        # It can never be sent to a worker: its parents' results together exceed what
        # one assignment can carry. Failed at once, not queued to be stranded RUNNING.
        (P, F),
        (Q, R),  # assignment: the compare-and-swap that issues a new fencing token
        (Q, C),
        (R, S),  # a result under the current token, committed
        (R, P),  # failed attempt with attempts left: back off, then run again
        (R, F),  # failed attempt, none left: dead-letter queue
        (R, C),  # cancelled while running; the worker is told to stop
        (R, Q),  # lease reclaimed without the job's fault (scheduler restart, lease not held)
        (F, Q),  # dead-letter re-queue
        (U, P),  # a re-queued ancestor revives its descendants
    }
)

TERMINAL: frozenset[JobState] = frozenset({S, F, C, U})
LIVE: frozenset[JobState] = frozenset({P, Q, R})


def check_transition(job_id: int, current: JobState, new: JobState) -> None:
    """Raise IllegalTransition unless ``current -> new`` is in the table."""
    if (current, new) not in TRANSITIONS:
        raise IllegalTransition(job_id, current, new)
