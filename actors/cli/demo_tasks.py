"""Tasks for ``corral demo``: invoices (the double-billing villain), a warehouse DAG, a flaky
job that succeeds on its third attempt, and one that always fails (it ends in the dead-letter
queue). Side effects go to files under $CORRAL_DEMO_DIR so the demo can count them.
"""

from __future__ import annotations

import json
import os
import time

from actors import context, task


def _ledger(name: str) -> str:
    return os.path.join(os.environ.get("CORRAL_DEMO_DIR", "."), name)


def _append(name: str, record: dict[str, object]) -> None:
    with open(_ledger(name), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@task(name="billing.invoice")
def invoice(customer: str, amount: float, seconds: float = 0.3) -> dict[str, object]:
    """Charge a customer once. The charge is keyed by the idempotency key, so a re-run after a
    crash (at-least-once execution) cannot bill twice; the fencing token shows which attempt."""
    ctx = context()
    _append("executions.jsonl", {"job": ctx.job_id, "token": ctx.token, "pid": os.getpid()})
    time.sleep(seconds)
    key = ctx.idempotency_key or f"job-{ctx.job_id}"
    billed = set()
    if os.path.exists(_ledger("billed.jsonl")):
        with open(_ledger("billed.jsonl"), encoding="utf-8") as f:
            billed = {json.loads(line)["key"] for line in f}
    if key not in billed:
        _append(
            "billed.jsonl", {"key": key, "customer": customer, "amount": amount, "token": ctx.token}
        )
    return {"customer": customer, "amount": amount, "token": ctx.token}


@task(name="warehouse.step")
def warehouse_step(step: str, order: str) -> str:
    time.sleep(0.2)
    return f"{step} done for {order}"


@task(name="demo.flaky")
def flaky(name: str) -> str:
    """Fails on its first two attempts, then succeeds."""
    attempt = context().attempt
    if attempt < 3:
        raise ConnectionError(f"{name}: payment gateway timed out (attempt {attempt})")
    return f"{name} ok on attempt {attempt}"


@task(name="demo.broken")
def broken() -> None:
    raise ValueError("this report template does not exist")
