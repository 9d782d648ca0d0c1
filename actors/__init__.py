"""corral's public face: what a user of the SDK writes against.

``from actors import task, context, Client`` covers a task module and a submitter:
``task`` and ``context`` (register a handler, read the running job's ``JobContext``),
``Client`` and ``AsyncClient`` with ``job_spec`` (and ``configure``, the default client
that ``@task`` objects submit through), every error a user can meet (all under
``CorralError``), and the views and outcomes the client's methods return.

Each name is imported from its home module on first use (PEP 562 ``__getattr__``), so
``import actors`` costs nothing and imports neither the scheduler nor the worker agent.
It cannot be eager: ``transport`` and ``strategies`` import ``actors.errors`` (their
errors derive from ``CorralError``), which runs this file first; an eager import of the
client here would import ``transport`` back while it is half initialised.

Modules inside corral import each name from its defining module, never from ``actors``:
this file is for users, and importing it from inside would tie every module that it
names into one import circle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.client import AsyncClient, Client, job_spec
    from actors.client.default import configure
    from actors.errors import (
        ActorCrashed,
        ConfigError,
        CorralError,
        IllegalTransition,
        JobFailed,
        NotLeaderAnymore,
        PoolStartFailed,
        RequestLost,
        RequestRefused,
        RequestTimedOut,
        SchedulerUnreachable,
        StoreDamaged,
        StoreError,
        StoreFull,
        StoreInconsistent,
        StoreLost,
        UnknownStrategy,
        WaitTimeout,
        WorkflowRejected,
    )
    from actors.worker.tasks import JobContext, Task, context, task
    from transport.errors import (
        AddressInUse,
        BadFrame,
        Closed,
        PeerGone,
        TransportError,
        UnknownAddress,
    )
    from transport.protocol import (
        AttemptView,
        Event,
        JobOutcome,
        JobSpec,
        JobView,
        QueueView,
        RequeueReply,
        RunningView,
        StatusView,
        StepView,
        WorkerView,
        WorkflowView,
    )

# Each public name and the module that defines it (the same lists as the imports above).
_HOMES: dict[str, tuple[str, ...]] = {
    "actors.worker.tasks": ("task", "context", "JobContext", "Task"),
    "actors.client": ("Client", "AsyncClient", "job_spec"),
    "actors.client.default": ("configure",),
    "actors.errors": (
        "CorralError",
        "ConfigError",
        "SchedulerUnreachable",
        "RequestTimedOut",
        "RequestLost",
        "RequestRefused",
        "JobFailed",
        "WaitTimeout",
        "WorkflowRejected",
        "UnknownStrategy",
        "PoolStartFailed",
        "StoreError",
        "StoreFull",
        "StoreLost",
        "StoreDamaged",
        "StoreInconsistent",
        "NotLeaderAnymore",
        "IllegalTransition",
        "ActorCrashed",
    ),
    "transport.errors": (
        "TransportError",
        "UnknownAddress",
        "AddressInUse",
        "BadFrame",
        "PeerGone",
        "Closed",
    ),
    # What the client's methods return (``wire.X`` inside corral).
    "transport.protocol": (
        "JobSpec",
        "JobOutcome",
        "JobView",
        "AttemptView",
        "StatusView",
        "WorkerView",
        "QueueView",
        "RunningView",
        "WorkflowView",
        "StepView",
        "Event",
        "RequeueReply",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "ActorCrashed",
    "AddressInUse",
    "AsyncClient",
    "AttemptView",
    "BadFrame",
    "Client",
    "Closed",
    "ConfigError",
    "CorralError",
    "Event",
    "IllegalTransition",
    "JobContext",
    "JobFailed",
    "JobOutcome",
    "JobSpec",
    "JobView",
    "NotLeaderAnymore",
    "PeerGone",
    "PoolStartFailed",
    "QueueView",
    "RequestLost",
    "RequestRefused",
    "RequestTimedOut",
    "RequeueReply",
    "RunningView",
    "SchedulerUnreachable",
    "StatusView",
    "StepView",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreInconsistent",
    "StoreLost",
    "Task",
    "TransportError",
    "UnknownAddress",
    "UnknownStrategy",
    "WaitTimeout",
    "WorkerView",
    "WorkflowRejected",
    "WorkflowView",
    "configure",
    "context",
    "job_spec",
    "task",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its home module the first time it is asked for."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
