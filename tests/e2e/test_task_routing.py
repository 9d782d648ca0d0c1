"""Jobs go only to workers that have their task, and a submission may ask to be refused when
no connected worker has it (``Submit.require_worker``). Real scheduler and worker processes,
each worker started with a different task module."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq

from actors.client import AsyncClient
from tests.helpers.procs import Procs, free_address
from transport import protocol as wire

pytestmark = pytest.mark.slow


def _other_worker(procs: Procs, address: str, name: str) -> None:
    procs.spawn(name, "worker", "tests.helpers.other_tasks", "--connect", address, "--name", name)


def _submit(sock: zmq.Socket[bytes], request_id: int, task: str) -> wire.Message:
    request = wire.Submit(request_id, [wire.JobSpec(task)], require_worker=True)
    sock.send(wire.encode(request))
    while True:
        assert sock.poll(5000), "no reply to the submission"
        reply = wire.decode_reply(sock.recv())
        if getattr(reply, "request_id", None) == request_id:
            return reply


async def test_a_job_runs_on_the_worker_that_has_its_task_even_when_another_is_idle(
    procs: Procs, tmp_path: Path
) -> None:
    address = free_address()
    procs.scheduler(address, tmp_path / "corral.db")
    procs.worker(address, "ledger", 4)  # idle, and without other.where
    async with AsyncClient(address, connect_timeout=10) as client:
        await client.submit("record", [0])  # wait until the ledger worker takes jobs
        _other_worker(procs, address, "other")
        ids = [await client.submit("other.where", max_retries=0) for _ in range(6)]
        outcomes = await client.wait(ids, timeout=30)
    assert {wire.unpack(o.result) for o in outcomes.values()} == {"other"}


async def test_require_worker_refuses_a_task_no_connected_worker_has(
    procs: Procs, tmp_path: Path
) -> None:
    address = free_address()
    procs.scheduler(address, tmp_path / "corral.db")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        sock.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        assert sock.poll(5000)
        assert isinstance(wire.decode_reply(sock.recv()), wire.Welcome)
        none = _submit(sock, 1, "other.where")
        assert isinstance(none, wire.ErrorReply)
        assert none.code == "no_worker"
        assert "'other.where'" in none.message
        procs.worker(address, "ledger", 1)
        async with AsyncClient(address, connect_timeout=10) as client:
            await client.result(await client.submit("record", [0]), timeout=20)  # it is up
            wrong = _submit(sock, 2, "other.where")
            assert isinstance(wrong, wire.ErrorReply)
            assert wrong.code == "no_worker"
            assert "record" in wrong.message, "it says which tasks the workers have"
            _other_worker(procs, address, "other")
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
