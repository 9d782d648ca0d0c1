"""Errors raised by corral's actors, SDK, worker and CLI, under one root: ``CorralError``.

Every error corral raises derives from ``CorralError``; the transport layer keeps its own
module (``transport.errors``, rooted at ``TransportError``, itself a ``CorralError``).
Two exceptions are not errors and stand apart on purpose: ``JobStopped`` (a
``BaseException`` raised inside a handler the worker stops, like
``asyncio.CancelledError``, so a handler's ``except Exception`` cannot swallow it) and
the runtime's private clean-stop sentinel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class CorralError(Exception):
    """Root of every corral error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its args and fields, rebuilt without calling __init__ (whose arguments
        # are the fields, not the message kept in ``args``): an error then survives a trip
        # between processes (multiprocessing, a process pool) as itself.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[CorralError], args: tuple[Any, ...], fields: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


class IllegalTransition(CorralError):
    """Raised when a job would move between two states the lifecycle table does not link."""

    def __init__(self, job_id: int, current: Any, new: Any) -> None:
        super().__init__(f"job {job_id}: illegal transition {current} -> {new}")
        self.job_id, self.current, self.new = job_id, current, new


class ActorCrashed(CorralError):
    """Raised by the actor system when an actor died and may not be restarted."""

    def __init__(self, actor: str, cause: BaseException) -> None:
        super().__init__(f"actor {actor} crashed: {cause!r}")
        self.actor, self.cause = actor, cause


class ConfigError(CorralError):
    """Raised when a setting (a flag or its ``CORRAL_*`` variable) has a value that is not
    allowed; names the setting, the value given and what is allowed. The CLI exits 2."""

    def __init__(self, setting: str, value: object, allowed: str) -> None:
        super().__init__(f"{setting}: {value!r} is not allowed: {allowed}")
        self.setting, self.value, self.allowed = setting, value, allowed


class StoreError(CorralError):
    """Raised when the database cannot be opened, read or written (a missing folder, a file
    that is not SQLite, a full disk, a file deleted under the scheduler). The scheduler
    stops at once, acknowledging nothing more; ``path`` is the database file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class StoreFull(StoreError):
    """Raised when a commit fails because the disk (or the database's size limit) is full.
    Nothing of that commit was acknowledged; what was acknowledged before is on disk."""


class StoreLost(StoreError):
    """Raised when the file at the database's path is no longer the file the scheduler
    writes (deleted, or moved and replaced): commits would go to a file nobody can open."""


class StoreDamaged(StoreError):
    """Raised at start-up when the database file is not SQLite or fails its integrity
    check; the scheduler refuses to run on it rather than lose or invent jobs."""


class NotLeaderAnymore(StoreError):
    """Raised when a scheduler that led with ``term`` finds that it no longer does: a
    commit's fencing check (its first statement) found another term or an expired one, so
    nothing of that batch was committed; or the renewal of its term found it taken; or its
    own clock says the term lapsed. The scheduler stops assigning and stands by."""

    def __init__(self, path: str, term: int, message: str) -> None:
        super().__init__(path, message)
        self.term = term


class StoreInconsistent(CorralError):
    """Raised when the store disagrees with the scheduler's memory: a compare-and-swap found
    a job in another status than expected, or an insert clashed with a stored row (the same
    id or idempotency key). Nothing of that batch was applied. Two writers, or a damaged
    database; the scheduler stops rather than risk double billing."""


class SchedulerUnreachable(CorralError):
    """Raised by the SDK when no scheduler answered at the address(es) within the timeout,
    or (``standbys``) only standbys did, naming no leader that answered."""

    def __init__(self, address: str, timeout: float, standbys: str = "") -> None:
        if standbys:
            text = (
                f"no leader answered at {address} within {timeout:g}s: {standbys} answered "
                "as standby, naming no leader that answered (an election under way, or no "
                "scheduler can lead: see its log)"
            )
        else:
            text = (
                f"no scheduler answered at {address} within {timeout:g}s "
                "(start one with `corral scheduler`, or pass --connect / CORRAL_ADDRESS)"
            )
        super().__init__(text)
        self.address, self.timeout = address, timeout


class RequestTimedOut(SchedulerUnreachable):
    """Raised by the SDK when a request got no reply in time from a scheduler that had
    answered this client before (it stopped, or is overloaded): not "no scheduler"."""

    def __init__(self, address: str, timeout: float, request: str, why: str) -> None:
        CorralError.__init__(self, f"{request} to {address} timed out after {timeout:g}s: {why}")
        self.address, self.timeout, self.request = address, timeout, request


class RequestLost(CorralError):
    """Raised by the SDK when the scheduler restarted while a request that is not safe to
    repeat (a submission without idempotency keys) was in flight: it may or may not have
    been applied before the restart."""


class RequestRefused(CorralError):
    """Raised by the SDK when the scheduler refused a request; nothing was changed.
    ``retry_after``: seconds after which the same request would pass (a submission over
    its client's rate), 0 when waiting alone will not help."""

    def __init__(self, code: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retry_after = code, message, retry_after


class JobFailed(CorralError):
    """Raised by ``result()`` when the job ended in a state other than SUCCEEDED."""

    def __init__(self, job_id: int, status: str, error: str | None) -> None:
        super().__init__(f"job {job_id} ended {status}" + (f":\n{error}" if error else ""))
        self.job_id, self.status, self.error = job_id, status, error


class WaitTimeout(CorralError):
    """Raised by ``wait()`` / ``result()`` when the job had not finished within the timeout."""

    def __init__(self, job_ids: list[int], timeout: float) -> None:
        shown = ", ".join(map(str, job_ids[:5])) + ("…" if len(job_ids) > 5 else "")
        super().__init__(f"{len(job_ids)} job(s) not finished after {timeout:g}s: {shown}")
        self.job_ids, self.timeout = job_ids, timeout


class WorkflowRejected(CorralError):
    """Raised when a submitted workflow is not a DAG of uniquely named steps: a duplicate
    step name, a step after itself, after an unknown step, or a cycle (named in the message).
    ``code`` is the stable reason sent back to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class UnknownStrategy(CorralError, ValueError):
    """Raised when a scheduling strategy name is not registered; names the ones that are.
    Also a ``ValueError``, as it was before it joined this module."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown strategy {name!r}; choose one of: {', '.join(sorted(known))}")
        self.name = name


class PoolStartFailed(CorralError, RuntimeError):
    """Raised by a worker's process pool when its first child process exits before it is
    ready (its task modules fail to import in a fresh process, usually). Also a
    ``RuntimeError``, as it was before it joined this module."""


# Signals inside the worker: they never leave it (a job's result carries their text).


class LeaseLapsed(CorralError):
    """Raised (in a runner's ``started`` future) when a job's lease had lapsed by the
    worker's own clock right before its handler would have started: it never ran."""


class HandlerFailed(CorralError):
    """Raised when a handler failed where its exception object cannot travel (a child
    process): carries the traceback text and whether a retry could help."""

    def __init__(self, text: str, retry: bool) -> None:
        super().__init__(text)
        self.text = text
        self.retry = retry
