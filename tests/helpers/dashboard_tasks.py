"""Tasks the dashboard's browser tests run on real workers: one that succeeds, and one
that fails while a file exists (so a test decides when a re-queued job may succeed)."""

from __future__ import annotations

import os

from actors import task


@task(name="charge")
def charge(invoice: str) -> dict[str, str]:
    return {"invoice": invoice, "status": "paid"}


@task(name="charge_unless")
def charge_unless(invoice: str, declined_while: str) -> dict[str, str]:
    """Fails with a card-declined error while the file ``declined_while`` exists."""
    if os.path.exists(declined_while):
        raise ValueError(f"card declined for invoice {invoice}")
    return {"invoice": invoice, "status": "paid"}
