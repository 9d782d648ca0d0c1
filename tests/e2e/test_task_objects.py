"""Tasks submitted directly (issue 17): ``@task`` returns an object whose ``submit``,
``submit_async``, ``run`` and ``run_async`` go through the default client, configured by
``actors.configure`` or by ``CORRAL_CONNECT``; per-task defaults declared on ``@task``
apply unless the submission overrides them; job options and handler arguments are told
apart by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import actors
from actors.client import default
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger, record, slow_defaults
from tests.helpers.waiting import until_workers

pytestmark = pytest.mark.slow


@pytest.fixture
def configured(cluster: Cluster) -> Iterator[Cluster]:
    cluster.start(workers=1)
    actors.configure(cluster.address, connect_timeout=10.0)
    try:
        yield cluster
    finally:
        default.close()
        default._settings = None


async def test_submit_run_and_their_async_forms_go_through_the_default_client(
    configured: Cluster,
) -> None:
    async with configured.client() as client:
        await until_workers(client, {"w0"})
        job_id = await record.submit_async("async", priority=3)
        assert await client.result(job_id, timeout=30) == "async"
        view = await client.job(job_id)
        assert view is not None
        assert view.priority == 3, "priority is a job option"
        assert await record.run_async(value="kw", seconds=0.0) == "kw", (
            "value and seconds are the handler's"
        )
    assert {r["value"] for r in read_ledger(configured.ledger)} == {"async", "kw"}


def test_the_blocking_forms_and_the_tasks_declared_defaults(configured: Cluster) -> None:
    job_id = record.submit("blocking", delay=0.5)
    assert isinstance(job_id, int)
    assert record.run("ran") == "ran"
    client = default.client()
    assert client.result(job_id, timeout=30) == "blocking"
    declared = slow_defaults.submit()
    view = client.job(declared)
    assert view is not None
    assert (view.priority, view.max_retries, view.queue) == (7, 1, "default")
    overridden = slow_defaults.submit(priority=-2)
    view = client.job(overridden)
    assert view is not None
    assert view.priority == -2
    client.wait([declared, overridden], timeout=30)


def test_the_default_client_reads_corral_connect(cluster: Cluster) -> None:
    cluster.start(workers=1)
    script = textwrap.dedent(
        """
        from tests.helpers.ledger_tasks import record
        print(record.run("from the environment"))
        """
    )
    env = {**cluster.procs.env, "CORRAL_CONNECT": cluster.address}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the environment"
