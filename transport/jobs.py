"""The wire messages that read and act on jobs by id (``corral job``, ``jobs``, ``cancel``,
``requeue``) and their replies. ``transport.protocol`` re-exports all of it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from transport.message import Message
from transport.payloads import JobId, RequestId, TaskName, UnixTime
from transport.views import JobView

# ---------------------------------------------------------- to the scheduler


class GetJob(Message, frozen=True):
    request_id: RequestId
    job_id: JobId


class CancelJobs(Message, frozen=True):
    request_id: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(min_length=1, max_length=100_000)]


class ListJobs(Message, frozen=True):
    request_id: RequestId
    status: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    queue: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    # Keyset paging: only jobs with an id below this one (the last id of the page before).
    before: JobId | None = None
    # Only this task's jobs; only the job with this idempotency key (at most one).
    task: TaskName | None = None
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None
    # Only jobs created at or after ``created_after``, before ``created_before`` (Unix times).
    created_after: UnixTime | None = None
    created_before: UnixTime | None = None


class Requeue(Message, frozen=True):
    """Re-queue dead-lettered (FAILED) jobs: these ids, or every one with ``all_failed``."""

    request_id: RequestId
    job_ids: Annotated[list[JobId], msgspec.Meta(max_length=100_000)] = []
    all_failed: bool = False


# ---------------------------------------------------------- from the scheduler


class JobReply(Message, frozen=True):
    request_id: int
    job: JobView | None


class CancelReply(Message, frozen=True):
    request_id: int
    statuses: list[tuple[int, str]]  # (job_id, status after the request)


class JobList(Message, frozen=True):
    request_id: int
    jobs: list[JobView]


class RequeueReply(Message, frozen=True):
    request_id: int
    job_ids: list[int]
    skipped: list[tuple[int, str]] = []  # (job_id, why it was not re-queued)
