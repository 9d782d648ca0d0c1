"""What a worker reports about an execution, and how the reports fit in frames.

Everything here keeps one job's trouble to that job: an error text is cut to the
protocol's limit (head and tail kept), a result too big for a frame becomes a clear
failure of that job alone, and the Results frames are packed so none exceeds the frame
limit, however many results and however large. Every failure is logged once: a WARNING
line naming task, job, attempt, token and the exception's last line, and the full
traceback at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import traceback as tb
from typing import Any, Protocol

import msgspec

from actors.errors import HandlerFailed
from actors.worker.executors import JobStopped, ended_by
from actors.worker.tasks import TaskOptions, retryable, task_options
from transport import protocol as wire

log = logging.getLogger("corral.worker")

# A result must fit in a Results frame with the rest of its JobResult, and be forwardable
# in an Assign (as a parent's result) and an Outcomes frame: the same room the protocol
# leaves for a job's arguments.
MAX_RESULT_BYTES = wire.MAX_JOB_PAYLOAD_BYTES
# Bytes a JobResult takes beyond its payload and error text (ids, token, flags, msgpack
# headers): a generous upper bound, so frames packed with it never exceed the limit.
RESULT_OVERHEAD = 128
# Room for the Results frame's own header and credits.
FRAME_BUDGET = wire.MAX_FRAME_BYTES - 1024
MAX_RESULTS_PER_FRAME = 10_000  # the protocol allows 100,000; smaller frames ack sooner


def last_line(text: str) -> str:
    """The exception line of a traceback (its last non-empty line)."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:500]
    return ""


class Attempt(Protocol):
    """Who ran what: the names a report and a log line need. The job's
    ``wire.Assignment`` is one: no object is built per job to say it again."""

    @property
    def task(self) -> str: ...
    @property
    def job_id(self) -> int: ...
    @property
    def token(self) -> int: ...
    @property
    def attempt(self) -> int: ...


def succeeded(a: Attempt, payload: bytes) -> wire.JobResult:
    """A success, unless the encoded result cannot fit a frame (then a final failure)."""
    if len(payload) > MAX_RESULT_BYTES:
        return failed(
            a,
            f"result of {len(payload)} bytes exceeds the frame limit "
            f"({MAX_RESULT_BYTES} bytes); return a reference to the data (a path, a key) "
            "instead of the data",
            retry=False,
        )
    return wire.JobResult(a.job_id, a.token, True, msgspec.Raw(payload))


def failed(
    a: Attempt,
    error: str,
    *,
    retry: bool = True,
    traceback: str | None = None,
    fenced: bool = False,
) -> wire.JobResult:
    """A failure report, its text cut to the protocol's limit, logged once."""
    text = wire.truncate_error(traceback if traceback is not None else error)
    log.warning(
        "task %s failed: job %d, attempt %d, token %d%s: %s",
        a.task,
        a.job_id,
        a.attempt,
        a.token,
        "" if retry else " (final: a retry cannot help)",
        last_line(error),
    )
    if traceback is not None:
        log.info("job %d traceback:\n%s", a.job_id, text)
    return wire.JobResult(a.job_id, a.token, False, error=text, retry=retry, fenced=fenced)


FENCED = "self-fenced"  # how a stop for a lapsed lease begins (``fence_reason``)


def fence_reason(lease: float) -> str:
    """Why a job whose lease lapsed by the worker's clock was stopped."""
    return f"{FENCED}: lease of {lease:g}s not renewed"


def stopped(a: Attempt, reason: str) -> wire.JobResult:
    """A job ended before its handler could finish (timed out, self-fenced, told to stop,
    or never started): a failure, retried if its task's options allow it, marked
    ``fenced`` when its lease had lapsed."""
    retry = retryable(task_options(a.task), None, a.attempt)
    return failed(a, reason, retry=retry, fenced=reason.startswith(FENCED))


def outcome(
    a: Attempt, options: TaskOptions, done: asyncio.Future[Any], encoded: bool
) -> wire.JobResult:
    """The report of a handler that ended by itself (``done`` is settled); ``encoded``: its
    value is already msgpack bytes (a child process encoded it)."""
    exc = ended_by(done)
    if exc is None:
        if encoded:
            return succeeded(a, done.result())
        try:
            return succeeded(a, wire.encode(done.result()))
        except (TypeError, ValueError, OverflowError) as err:
            return failed(a, f"the result of {a.task} cannot be encoded: {err}", retry=False)
    if isinstance(exc, HandlerFailed):  # from a child: it judged retry_on already
        retry = exc.retry and retryable(options, None, a.attempt)
        return failed(a, exc.text, retry=retry, traceback=exc.text)
    if isinstance(exc, JobStopped):
        return failed(a, str(exc) or "stopped", retry=retryable(options, None, a.attempt))
    text = "".join(tb.format_exception(exc))
    return failed(a, text, retry=retryable(options, exc, a.attempt), traceback=text)


def _size(result: wire.JobResult) -> int:
    error = len(result.error.encode()) if result.error else 0
    return len(result.result) + error + RESULT_OVERHEAD


def pack(results: list[tuple[wire.JobResult, bool]], spare_credits: int) -> list[wire.Results]:
    """Results frames for ``results`` (each with whether its slot is free again) plus
    ``spare_credits`` slots freed after their results went out, every frame under the
    frame limit. ``credits=-1`` (one per result) whenever that is what it means."""
    frames: list[wire.Results] = []
    batch: list[wire.JobResult] = []
    credits = 0
    size = 0
    for result, freed in results:
        cost = _size(result)
        if batch and (size + cost > FRAME_BUDGET or len(batch) >= MAX_RESULTS_PER_FRAME):
            frames.append(_frame(batch, credits))
            batch, credits, size = [], 0, 0
        batch.append(result)
        credits += freed
        size += cost
    if batch or spare_credits:
        frames.append(_frame(batch, credits + spare_credits))
    return frames


def _frame(batch: list[wire.JobResult], credits: int) -> wire.Results:
    return wire.Results(batch, -1 if credits == len(batch) and batch else credits)
