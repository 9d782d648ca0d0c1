"""The default client that task objects submit through (``add.submit(2, 3)``,
``await add.submit_async(...)``, ``add.run(...)``): one blocking ``Client`` per process and
one ``AsyncClient`` per event loop, made on first use and kept open.

Configured by ``actors.configure(address, key=..., server_key=..., ...)``, or else by the
environment every corral command reads: ``CORRAL_CONNECT`` (or ``CORRAL_ADDRESS``; default
``tcp://127.0.0.1:5555``), ``CORRAL_KEY`` and ``CORRAL_SERVER_KEY``. ``configure`` closes
the clients made before it, so the next submission uses the new settings.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Sequence
from typing import Any

from actors.client.async_client import AsyncClient
from actors.client.sync_client import Client

_lock = threading.Lock()
_settings: dict[str, Any] | None = None  # None: from the environment
_client: Client | None = None
# Each loop's client, with the configuration generation it was made under.
_async_clients: dict[asyncio.AbstractEventLoop, tuple[int, AsyncClient]] = {}
_generation = 0


def configure(
    address: str | Sequence[str] | None = None,
    *,
    key: str | os.PathLike[str] | None = None,
    server_key: str | os.PathLike[str] | None = None,
    connect_timeout: float = 5.0,
    request_timeout: float = 60.0,
) -> None:
    """Set what the default client connects to (None: the environment's value)."""
    global _settings, _generation
    with _lock:
        _generation += 1
        _settings = {
            "address": address,
            "key": key,
            "server_key": server_key,
            "connect_timeout": connect_timeout,
            "request_timeout": request_timeout,
        }
    close()


def _options() -> dict[str, Any]:
    settings = dict(_settings or {})
    settings["address"] = settings.get("address") or None  # the client reads the env then
    settings["key"] = settings.get("key") or os.environ.get("CORRAL_KEY") or None
    settings["server_key"] = (
        settings.get("server_key") or os.environ.get("CORRAL_SERVER_KEY") or None
    )
    return settings


def client() -> Client:
    """The process's blocking default client (connected on first use)."""
    global _client
    with _lock:
        if _client is None:
            _client = Client(**_options())
        return _client


async def async_client() -> AsyncClient:
    """The running event loop's default client (connected on first use, and again after
    ``configure``)."""
    loop = asyncio.get_running_loop()
    existing = _async_clients.get(loop)
    if existing is not None:
        generation, made = existing
        if generation == _generation:
            return made
        await made.close()
    made = AsyncClient(**_options())
    await made.connect()
    for old in [other for other in _async_clients if other.is_closed()]:
        del _async_clients[old]  # loops that ended since (asyncio.run in a loop)
    _async_clients[loop] = (_generation, made)
    return made


def close() -> None:
    """Close the blocking default client (the async ones close with their loops)."""
    global _client
    with _lock:
        made, _client = _client, None
    if made is not None:
        made.close()


atexit.register(close)
