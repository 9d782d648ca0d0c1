"""Jobs go only to workers that have their task, and a submission may ask to be refused when
no connected worker has it (``Submit.require_worker``). Real scheduler and worker processes,
each worker started with a different task module."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from tests.helpers.cluster import Cluster
from transport import protocol as wire

pytestmark = pytest.mark.slow


OTHER_TASKS = "tests.helpers.other_tasks"  # other.where, and none of the ledger tasks


def _submit(sock: zmq.Socket[bytes], request_id: int, task: str) -> wire.Message:
    request = wire.Submit(request_id, [wire.JobSpec(task)], require_worker=True)
    sock.send(wire.encode(request))
    while True:
        assert sock.poll(5000), "no reply to the submission"
        reply = wire.decode_reply(sock.recv())
        if getattr(reply, "request_id", None) == request_id:
            return reply


async def test_a_job_runs_on_the_worker_that_has_its_task_even_when_another_is_idle(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.worker("ledger", 4)  # idle, and without other.where
    async with cluster.client() as client:
        await client.submit("record", [0])  # wait until the ledger worker takes jobs
        cluster.worker("other", tasks=OTHER_TASKS)
        ids = [await client.submit("other.where", max_retries=0) for _ in range(6)]
        outcomes = await client.wait(ids, timeout=30)
    assert {wire.unpack(o.result) for o in outcomes.values()} == {"other"}


async def test_require_worker_refuses_a_task_no_connected_worker_has(cluster: Cluster) -> None:
    cluster.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.address)
    try:
        sock.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        assert sock.poll(5000)
        assert isinstance(wire.decode_reply(sock.recv()), wire.Welcome)
        none = _submit(sock, 1, "other.where")
        assert isinstance(none, wire.ErrorReply)
        assert none.code == "no_worker"
        assert "'other.where'" in none.message
        cluster.worker("ledger", 1)
        async with cluster.client() as client:
            await client.result(await client.submit("record", [0]), timeout=20)  # it is up
            wrong = _submit(sock, 2, "other.where")
            assert isinstance(wrong, wire.ErrorReply)
            assert wrong.code == "no_worker"
            assert "record" in wrong.message, "it says which tasks the workers have"
            cluster.worker("other", tasks=OTHER_TASKS)
            accepted: wire.Message = wrong
            for request_id in range(3, 400):  # until the other worker has said hello
                accepted = _submit(sock, request_id, "other.where")
                if isinstance(accepted, wire.Submitted):
                    break
                await asyncio.sleep(0.05)
            assert isinstance(accepted, wire.Submitted)
            assert await client.result(accepted.job_ids[0], timeout=20) == "other"
    finally:
        sock.close()
