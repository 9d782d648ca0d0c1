"""One job as the scheduler holds it.

``Job`` carries the persisted fields first, then memory-only ones; how a store keeps them
is the store's business (``actors.scheduler.store``). Its state changes only through
``actors.scheduler.jobs.JobTable``, which records each change as a compare-and-swap update
(:meth:`Job.update_row`, in ``actors.scheduler.ops.CHANGED_FIELDS`` order).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from actors.lifecycle import JobState
from transport import protocol as wire

# A lease records its worker as NAME@KEY when keys are on (the dispatcher's
# ``_leased_as``): views show NAME; the key stays in the database, for adoption.
_KEYED_NAME = re.compile(r"@[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


# The most distinct task and queue names a JobTable keeps one shared copy of.
NAMES_KEPT = 10_000


class SharedNames(dict[str, str]):
    """One copy of each task or queue name for all the jobs naming it.

    Every decoded job brings its own copies of its task's and queue's names (about 60
    bytes each, the most of a queued job's memory after the ``Job`` itself); jobs keep the
    first copy instead. Bounded: past ``NAMES_KEPT`` names (only a peer that names a new
    task per job gets there) it starts afresh, and later jobs share the new copies.
    """

    def __call__(self, name: str) -> str:
        kept = self.get(name)
        if kept is None:
            if len(self) >= NAMES_KEPT:
                self.clear()
            kept = self[name] = name
        return kept

    def share(self, job: Job) -> Job:
        """``job``, its task's and queue's names now these shared copies (a job read back
        from a store brings its own)."""
        job.task, job.queue = self(job.task), self(job.queue)
        return job


# A job's usual arguments, ``[]`` and ``{}``: one object each, shared by every job with
# none, submitted (``kept_args``) or read back from a store (``JobTable.admit``).
NO_ARGS = b"\x90"  # wire.EMPTY_ARGS's bytes
NO_KWARGS = b"\x80"  # wire.EMPTY_KWARGS's bytes


def kept_args(args: msgspec.Raw) -> bytes:
    """Decoded args as a job keeps them: their own bytes, or the shared ``NO_ARGS``."""
    return NO_ARGS if args == wire.EMPTY_ARGS else bytes(args)


def kept_kwargs(kwargs: msgspec.Raw) -> bytes:
    """Decoded kwargs as a job keeps them: their own bytes, or the shared ``NO_KWARGS``."""
    return NO_KWARGS if kwargs == wire.EMPTY_KWARGS else bytes(kwargs)


def raw_args(args: bytes) -> msgspec.Raw:
    """Kept args as the protocol sends them (embedded as they are, not re-encoded)."""
    return wire.EMPTY_ARGS if args is NO_ARGS else msgspec.Raw(args)


def raw_kwargs(kwargs: bytes) -> msgspec.Raw:
    """Kept kwargs as the protocol sends them."""
    return wire.EMPTY_KWARGS if kwargs is NO_KWARGS else msgspec.Raw(kwargs)


def shown_worker(name: str | None) -> str | None:
    """A lease's worker as views show it: its name without the key it is bound to."""
    return _KEYED_NAME.sub("", name) if name else name


class JobOptions(msgspec.Struct, frozen=True, gc=False):
    """What few jobs set, held apart from the ``Job``: the usual job, with none of these,
    holds one ``None`` instead of seven fields (48 bytes less per queued job)."""

    idempotency_key: str | None = None
    timeout: float | None = None
    backoff: wire.Backoff | None = None
    workflow_id: int | None = None
    step: str | None = None
    concurrency_key: str = ""  # "": none; at most max_concurrent of a key run at once
    max_concurrent: int = 0  # 0: no cap (the key may still name a rate limit)


def job_options(
    idempotency_key: str | None = None,
    timeout: float | None = None,
    backoff: wire.Backoff | None = None,
    workflow_id: int | None = None,
    step: str | None = None,
    concurrency_key: str | None = "",
    max_concurrent: int | None = 0,
) -> JobOptions | None:
    """The options a job keeps: ``None`` when none is set."""
    if (
        idempotency_key is None
        and timeout is None
        and backoff is None
        and workflow_id is None
        and step is None
        and not concurrency_key
        and not max_concurrent
    ):
        return None
    return JobOptions(
        idempotency_key,
        timeout,
        backoff,
        workflow_id,
        step,
        concurrency_key or "",
        max_concurrent or 0,
    )


_NO_OPTIONS = JobOptions()


class Job(msgspec.Struct, gc=False):
    """One job, as the scheduler holds it. Persisted fields first, then memory-only ones."""

    id: int
    task: str
    # Encoded args and kwargs in bytes of their own: a decoded ``msgspec.Raw`` is a view
    # that keeps its whole request frame alive (about 110 bytes per queued job more).
    args: bytes
    kwargs: bytes
    priority: int
    queue: str
    depends_on: tuple[int, ...]  # a tuple: untracked by the cyclic GC (a list per job is not)
    max_retries: int
    created_at: float
    status: JobState
    attempts: int = 0
    token: int = 0
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    not_before: float = 0.0
    result: msgspec.Raw | None = None
    error: str | None = None
    owner: str = ""  # the public key of the client that submitted it ("": no keys)
    options: JobOptions | None = None  # None: none set (see ``job_options``)
    # memory only
    parent_results: list[wire.ParentResult] | None = None
    queued_at: float = 0.0  # monotonic time it last became QUEUED (assignment latency)
    peer: bytes | None = None
    settled: bool = False  # terminal state committed and announced

    @property
    def opts(self) -> JobOptions:
        """The job's options, the defaults when it set none."""
        return self.options or _NO_OPTIONS

    @property
    def idempotency_key(self) -> str | None:
        return self.opts.idempotency_key

    @property
    def timeout(self) -> float | None:
        return self.opts.timeout

    @property
    def backoff(self) -> wire.Backoff | None:
        return self.opts.backoff

    @property
    def workflow_id(self) -> int | None:
        return self.opts.workflow_id

    @property
    def step(self) -> str | None:
        return self.opts.step

    @property
    def concurrency_key(self) -> str:
        return self.opts.concurrency_key

    @property
    def max_concurrent(self) -> int:
        return self.opts.max_concurrent

    def update_row(self, expected: JobState) -> tuple[Any, ...]:
        """This job's compare-and-swap update: ``CHANGED_FIELDS``, id, expected status."""
        return (
            self.status,
            self.attempts,
            self.token,
            self.worker,
            self.started_at,
            self.finished_at,
            self.not_before,
            self.result,
            self.error,
            self.id,
            expected,
        )

    def assignment(self) -> wire.Assignment:
        """This (just leased) job as its worker receives it."""
        options = self.opts
        return wire.Assignment(
            self.id,
            self.token,
            self.task,
            raw_args(self.args),
            raw_kwargs(self.kwargs),
            self.attempts,
            options.idempotency_key,
            options.timeout,
            self.parent_results or [],
            options.step,
            options.workflow_id,
        )

    def outcome(self) -> wire.JobOutcome:
        return wire.JobOutcome(self.id, self.status, self.result or wire.NONE_RAW, self.error)

    def parent_result(self) -> wire.ParentResult:
        """This (succeeded) job's result as its children receive it."""
        return wire.ParentResult(self.id, self.step, self.result or wire.NONE_RAW)

    def view(self) -> wire.JobView:
        return wire.JobView(
            self.id,
            self.task,
            self.status.value,
            self.priority,
            self.queue,
            self.attempts,
            self.max_retries,
            self.token,
            shown_worker(self.worker),
            list(self.depends_on),
            self.idempotency_key,
            self.created_at,
            self.started_at,
            self.finished_at,
            self.result or wire.NONE_RAW,
            self.error,
            not_before=self.not_before if self.status is JobState.PENDING else 0.0,
            concurrency_key=self.concurrency_key,
            max_concurrent=self.max_concurrent,
            workflow_id=self.workflow_id,
            step=self.step,
        )
