"""The client SDK: submit jobs, wait for results, read status. Async (``AsyncClient``) and
sync (``Client``, which runs an ``AsyncClient`` on a private event-loop thread).

The pieces live in their own modules: ``client_specs`` (job descriptions, size limits,
task defaults), ``client_base`` (the connection: replies matched to requests, timeouts,
scheduler restarts), ``client_async`` and ``client_sync`` (the two APIs).
"""

from __future__ import annotations

from actors.client.async_client import SUBMIT_CHUNK, WAIT_CHUNK, AsyncClient
from actors.client.connection import RECHECK_S, SILENCE_S
from actors.client.specs import job_spec, task_defaults
from actors.client.sync_client import Client

__all__ = [
    "RECHECK_S",
    "SILENCE_S",
    "SUBMIT_CHUNK",
    "WAIT_CHUNK",
    "AsyncClient",
    "Client",
    "job_spec",
    "task_defaults",
]
