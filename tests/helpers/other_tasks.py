"""A second task module for tests where workers differ in the tasks they have: a worker
started with this module has ``other.where`` and none of ``tests.helpers.ledger_tasks``."""

from __future__ import annotations

from actors import context, task


@task(name="other.where")
def where() -> str:
    """The name of the worker that ran it."""
    return context().worker
