"""Task registration and the running job's context: ``@task``, ``task_options``, ``context()``.

Kept apart from the worker agent (no sockets, no event loop) so a process-pool child,
and a client in the same process, can read the registry and the task options cheaply.

A task's options say what its own author knows about it: which exceptions a retry can
cure (``retry_on``), how many retries it deserves at most (``max_retries``), how long
an attempt may run when the job names no timeout (``timeout``), and the queue and
priority its jobs get when the submitter names none (``queue``, ``priority``: applied by
a client that has the task registered in its own process).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, ParamSpec, TypeVar, overload

from actors.errors import RequestRefused
from actors.rates import MAX_COUNT, default_burst, parse_rate
from actors.worker.options import OPTIONS as OPTIONS
from actors.worker.options import TaskOptions as TaskOptions
from actors.worker.options import task_options as task_options
from transport import protocol as wire

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

REGISTRY: dict[str, Callable[..., Any]] = {}


# Keyword arguments of ``Task.submit``/``run`` that are job options, not the handler's.
JOB_OPTIONS = frozenset(
    {"priority", "queue", "depends_on", "max_retries", "idempotency_key", "timeout",
     "backoff", "delay", "run_at", "concurrency_key", "max_concurrent"}
)  # fmt: skip


class Task(Generic[P, R]):
    """What ``@task`` returns: the function itself when called (``add(2, 3)`` runs it
    here), and a job when submitted, through the default client (``actors.configure``, or
    ``CORRAL_CONNECT``): ``add.submit(2, 3, priority=5, delay=10)`` returns the job id,
    ``await add.submit_async(...)`` the same from async code, ``add.run(2, 3)`` (and
    ``await add.run_async(...)``) submits, waits and returns the result, raising
    ``JobFailed`` if it did not succeed. Keyword arguments named like a job option
    (``JOB_OPTIONS``) are job options; a handler whose own parameters have such names is
    submitted with ``submit_with(args, kwargs, **options)``."""

    def __init__(self, fn: Callable[P, R], name: str) -> None:
        self.fn = fn
        self.name = name
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<corral task {self.name}>"

    def submit(self, *args: Any, **kwargs: Any) -> int:
        fields, options = _split(kwargs)
        return self.submit_with(args, fields, **options)

    def submit_with(
        self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> int:
        from actors.client import default

        return default.client().submit(self.name, list(args), kwargs, **options)

    async def submit_async(self, *args: Any, **kwargs: Any) -> int:
        from actors.client import default

        fields, options = _split(kwargs)
        client = await default.async_client()
        return await client.submit(self.name, list(args), fields, **options)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        from actors.client import default

        fields, options = _split(kwargs)
        return default.client().run(self.name, list(args), fields, **options)

    async def run_async(self, *args: Any, **kwargs: Any) -> Any:
        from actors.client import default

        fields, options = _split(kwargs)
        client = await default.async_client()
        return await client.run(self.name, list(args), fields, **options)


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The handler's keyword arguments, and the job's options (incl. run's ``timeout``)."""
    options = {k: v for k, v in kwargs.items() if k in JOB_OPTIONS or k == "require_worker"}
    return {k: v for k, v in kwargs.items() if k not in options}, options


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    backoff: tuple[float, float, float] | None = None,
    concurrency_key: str | None = None,
    max_concurrent: int | None = None,
    rate_limit: str | None = None,
    rate_burst: int | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    backoff: tuple[float, float, float] | None = None,
    concurrency_key: str | None = None,
    max_concurrent: int | None = None,
    rate_limit: str | None = None,
    rate_burst: int | None = None,
) -> Any:
    """Register a function as a corral task: ``@task`` or ``@task(name="billing.invoice",
    retry_on=(IOError,), max_retries=5, timeout=30)``; returns a ``Task`` (call it to run
    the function here, ``.submit(...)`` to run it as a job).

    ``retry_on``: only these exceptions are worth a retry; any other fails the job at once.
    ``max_retries``: a failure of attempt ``max_retries + 1`` (or later) is final, whatever
    the job asked. ``timeout``: seconds an attempt may run when the job gives none.
    ``queue``, ``priority``, ``backoff`` (base, factor, cap), and ``max_retries`` and
    ``timeout`` again: what a client that has the task registered puts in a job spec for
    the fields its caller leaves out (``Task.submit`` always has it registered), as are
    ``concurrency_key`` and ``max_concurrent`` (at most N of the key's jobs run at once).
    ``rate_limit`` ("100/s", "30/m", "1000/h") and ``rate_burst`` (how many may start at
    once; default one second's worth): at most that many of the task's jobs start, across
    every worker, whoever submits them. Its workers declare it to the scheduler, which
    holds it like ``corral limit set TASK RATE`` does, except that an admin's limit of the
    same name wins over it."""
    limit = _rate_limit(rate_limit, rate_burst)
    if max_concurrent is not None and (max_concurrent < 1 or concurrency_key is None):
        raise ValueError(
            f"max_concurrent must be 1 or more, with a concurrency_key, got {max_concurrent}"
        )
    if max_retries is not None and max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be greater than 0, got {timeout}")
    if retry_on is not None:
        retry_on = tuple(retry_on)
        for kind in retry_on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"retry_on must hold exception classes, got {kind!r}")
    if backoff is not None:
        backoff = (float(backoff[0]), float(backoff[1]), float(backoff[2]))

    def register(func: Callable[P, R]) -> Task[P, R]:
        if isinstance(func, Task):
            func = func.fn
        key = name or f"{func.__module__}.{func.__qualname__}"
        REGISTRY[key] = func
        options = TaskOptions(
            retry_on, max_retries, timeout, queue, priority, backoff, concurrency_key,
            max_concurrent, limit,
        )  # fmt: skip
        if options != TaskOptions():
            OPTIONS[key] = options
        else:
            OPTIONS.pop(key, None)
        return Task(func, key)

    return register(fn) if fn is not None else register


def _rate_limit(rate: str | None, burst: int | None) -> tuple[int, float, int] | None:
    """``@task``'s ``rate_limit`` and ``rate_burst`` as (count, period, burst), checked:
    ValueError or TypeError at import time, not a surprise at the scheduler."""
    if rate is None:
        if burst is not None:
            raise ValueError("rate_burst needs a rate_limit")
        return None
    if not isinstance(rate, str):
        raise TypeError(f"rate_limit must be a string like '100/s', got {rate!r}")
    try:
        count, period = parse_rate(rate)
    except RequestRefused as exc:
        raise ValueError(exc.message) from None
    if burst is None:
        burst = default_burst(count, period)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_COUNT:
        raise ValueError(f"rate_burst must be a whole number, 1 to {MAX_COUNT:,}: {burst!r}")
    return count, period, burst


def retryable(options: TaskOptions, exc: BaseException | None, attempt: int) -> bool:
    """Whether a retry could help after this attempt failed with ``exc`` (None: we do not
    know the exception, e.g. a child process died)."""
    if options.max_retries is not None and attempt > options.max_retries:
        return False
    if exc is not None and options.retry_on is not None:
        return isinstance(exc, options.retry_on)
    return True


def _signature_now(fn: Callable[..., Any]) -> tuple[inspect.Signature | None, bool]:
    """``fn``'s signature (None: it has none, as some builtins) and whether a call with no
    arguments fits it."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, False
    try:
        signature.bind()
    except TypeError:
        return signature, False
    return signature, True


# ``inspect.signature`` costs several µs, and a worker checks every job's arguments against
# its function: kept per registered function (as many entries as tasks ever registered).
_cached_signature = functools.cache(_signature_now)


def _signature(fn: Callable[..., Any]) -> tuple[inspect.Signature | None, bool]:
    try:
        return _cached_signature(fn)
    except TypeError:  # not hashable: never cached (_signature_now raises no TypeError)
        return _signature_now(fn)


def bind_error(name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> str | None:
    """Why ``args``/``kwargs`` cannot be passed to ``fn`` (None if they can), checked before
    running: a job whose arguments do not fit its function can never succeed."""
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return (
            f"arguments of {name} must be a list and a map, "
            f"got {type(args).__name__} and {type(kwargs).__name__}"
        )
    signature, no_arguments_fit = _signature(fn)
    if signature is None:  # builtins without a signature: let the call decide
        return None
    if no_arguments_fit and not args and not kwargs:
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        # Parameter names only: annotations are often strings (PEP 563) and add noise.
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        return f"arguments do not match {name}{bare}: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler may know about the execution it is part of."""

    job_id: int
    token: int  # fencing token: grows with every attempt; pass it to external systems
    attempt: int
    idempotency_key: str | None
    worker: str
    # Results of the jobs this one depends on, by job id, and by step name for the
    # steps of the same workflow. All of them SUCCEEDED (or this job would not run).
    parents: dict[int, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    workflow_id: int | None = None
    step: str | None = None
    reporter: Callable[[float, str], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job has got (0.0 to 1.0) and what it is doing.

        Cheap to call often: the worker keeps only the latest report per job and sends
        at most four a second, so a chatty handler cannot flood the scheduler."""
        if self.reporter is not None:
            self.reporter(min(1.0, max(0.0, float(fraction))), str(message)[:1024])


# JobContext's fields in order, each with its slot's setter: ``job_context`` fills a new
# context through them rather than through its frozen dataclass __init__ (an
# object.__setattr__ call per field, a check per default): 2.2 µs per context against 3.8
# here (bench/README, part 11).
_CONTEXT_SLOTS = tuple(getattr(JobContext, f.name).__set__ for f in fields(JobContext))


def job_context(
    a: wire.Assignment,
    worker: str,
    loop: asyncio.AbstractEventLoop,
    record: Callable[[int, int, float, str], None],
) -> JobContext:
    """Job ``a``'s context on ``worker``; its progress reports go to ``record`` on ``loop``
    (from any thread, or a pool child's relay). Equal to ``JobContext(...)`` of the same
    values (tests/actors/test_job_context.py), built without its __init__."""
    parents: dict[int, Any] = {}
    steps: dict[str, Any] = {}
    if a.parents:  # most jobs have none: no comprehension to run
        parents = {p.job_id: wire.unpack(p.result) for p in a.parents}
        steps = {p.step: parents[p.job_id] for p in a.parents if p.step is not None}
    report = functools.partial(_report, loop.call_soon_threadsafe, record, a.job_id, a.token)
    values = (
        a.job_id, a.token, a.attempt, a.idempotency_key, worker,
        parents, steps, a.workflow_id, a.step, report,
    )  # fmt: skip
    ctx = object.__new__(JobContext)
    for set_slot, value in zip(_CONTEXT_SLOTS, values, strict=True):
        set_slot(ctx, value)
    return ctx


def _report(
    call_soon_threadsafe: Callable[..., Any],
    record: Callable[[int, int, float, str], None],
    job_id: int,
    token: int,
    fraction: float,
    message: str,
) -> None:
    call_soon_threadsafe(record, job_id, token, fraction, message)


class PendingContext(Generic[S]):
    """A job's context, built from ``source`` the first time its handler asks for it
    (``context()``), then the same object on every call. Most handlers never ask, and a
    JobContext (a frozen dataclass of ten fields) costs about 2 µs to build, more than a
    tenth of what the worker spends on a no-op job. Two threads asking at once may each
    build one: equal values, and the second is kept."""

    __slots__ = ("_build", "_built", "_source")

    def __init__(self, build: Callable[[S], JobContext], source: S) -> None:
        self._build = build
        self._source = source
        self._built: JobContext | None = None

    def get(self) -> JobContext:
        built = self._built
        if built is None:
            built = self._built = self._build(self._source)
        return built


# The running job's context (or what builds it), set by whatever runs a handler (the
# worker's runners, a pool child) around it; handlers read it through ``context()``.
CURRENT_JOB: contextvars.ContextVar[JobContext | PendingContext[Any]] = contextvars.ContextVar(
    "corral_job"
)


def context() -> JobContext:
    """The running job's context; only valid inside a task handler."""
    try:
        current = CURRENT_JOB.get()
    except LookupError:
        raise RuntimeError("corral.context() called outside a running task") from None
    return current if isinstance(current, JobContext) else current.get()
