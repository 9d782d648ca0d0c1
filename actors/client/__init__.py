"""The client SDK: submit jobs, wait for results, read status. Async (``AsyncClient``) and
sync (``Client``, which runs an ``AsyncClient`` on a private event-loop thread).

Users import these from ``actors``. The pieces live in their own modules: ``specs`` (job
descriptions, size limits, task defaults), ``connection`` (replies matched to requests,
timeouts, scheduler restarts), ``async_client`` and ``sync_client`` (the two APIs).
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
