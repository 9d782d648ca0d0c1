"""A second task module for end-to-end tests: a worker started with it has ``etl.extract``
and nothing else (a worker started with ``tests.helpers.ledger_tasks`` lacks it). Each
execution is written to the same ledger, in the same format, as ``ledger_tasks`` does."""

from __future__ import annotations

from typing import Any

from actors import task
from tests.helpers.ledger import event


@task(name="etl.extract")
def extract(value: Any = None) -> Any:
    event("start", value=value)
    event("end", value=value)
    return value
