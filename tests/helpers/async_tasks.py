"""A task module whose tasks are all async: a worker started with it runs every job on its
event loop and starts no process pool."""

from __future__ import annotations

from actors import task


@task(name="async.echo")
async def echo(value: int) -> int:
    return value
