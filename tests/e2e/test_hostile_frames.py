"""One hostile peer cannot stall the scheduler past a lease nor flood its log: frames that
would cost unbounded work (a heartbeat listing ten thousand leases, a wait naming one job
two hundred thousand times, thirty thousand waits on one job, thousands of frames nested
too deeply to decode) are answered with bounded work and summarized in a few log lines,
while a real worker's job runs on undisturbed. Timings are the fast test set (lease 1 s,
grace 0.4 s): a stall of more than a lease would fence or reclaim that job."""

from __future__ import annotations

import time

import msgspec
import pytest
import zmq

from actors.errors import RequestRefused
from tests.helpers.cluster import Cluster
from tests.helpers.ledger_tasks import read_ledger
from tests.helpers.waiting import until_running
from transport import protocol as wire

pytestmark = pytest.mark.slow


@pytest.fixture
def raw_socket() -> zmq.Socket[bytes]:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    yield sock
    sock.close()


def _drain(sock: zmq.Socket[bytes], quiet_ms: int = 300) -> list[wire.Message]:
    """Every frame the scheduler sent, until it has been quiet for ``quiet_ms``."""
    received: list[wire.Message] = []
    while sock.poll(quiet_ms):
        received.append(wire.decode_reply(sock.recv()))
    return received


def _log_lines(cluster: Cluster, needle: str) -> int:
    text = cluster.logs("scheduler")[0].read_text()
    return sum(1 for line in text.splitlines() if needle in line)


async def test_hostile_frames_cost_bounded_work_and_a_few_log_lines(
    cluster: Cluster, raw_socket: zmq.Socket[bytes]
) -> None:
    cluster.start()
    cluster.worker("honest", 1)
    async with cluster.client() as client:
        job_id = await client.submit("record", ["kept"], {"seconds": 3.0}, max_retries=0)
        await until_running(client, job_id)
        started = time.monotonic()

        raw_socket.connect(cluster.address)
        raw_socket.send(wire.encode(wire.WorkerHello(wire.PROTOCOL_VERSION, "hostile", 2)))
        # A heartbeat over the protocol's bound, and one within it but beyond the slots.
        too_many = msgspec.msgpack.encode(["Heartbeat", [[i, 1] for i in range(300_000)], 1.0, 0])
        raw_socket.send(too_many)
        raw_socket.send(wire.encode(wire.Heartbeat([(i, 1) for i in range(1, 10_001)], 2.0)))
        raw_socket.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        raw_socket.send(wire.encode(wire.Wait(1, [job_id] * 200_000)))
        for request_id in range(2, 30_002):
            raw_socket.send(wire.encode(wire.Wait(request_id, [job_id])))
        nested = b"\x93\xa6Submit\x01\x91\x92\xa1t" + b"\x91" * 10_000 + b"\xc0"
        for _ in range(3000):
            raw_socket.send(nested)
        stalled_for = time.monotonic() - started

        assert await client.result(job_id, timeout=30) == "kept"
        view = await client.job(job_id)
        replies = _drain(raw_socket)

    assert view is not None
    assert (view.token, view.attempts) == (1, 1), "never reclaimed meanwhile"
    assert len(read_ledger(cluster.ledger)) == 1, "executed once"
    stops = [m for m in replies if isinstance(m, wire.StopJob)]
    assert stops == [], "a heartbeat beyond the slots is one error, not 10,000 stops"
    errors = [m for m in replies if isinstance(m, wire.ErrorReply)]
    assert sum(e.code == "bad_frame" for e in errors) == 3000
    outcomes = [m for m in replies if isinstance(m, wire.Outcomes)]
    assert len(outcomes) == 30_001
    assert [len(o.outcomes) for o in outcomes if o.request_id == 1] == [1]
    # One summarized line a second at most, not one per frame (3000 frames above).
    assert _log_lines(cluster, "refused") <= 10 + 2 * stalled_for
    assert "Traceback" not in cluster.procs.log_text()


async def test_a_submit_too_large_for_a_frame_is_refused_at_once_with_its_request_id(
    cluster: Cluster,
) -> None:
    cluster.start()
    async with cluster.client() as client:
        with pytest.raises(RequestRefused) as refused:
            await client.submit("record", ["x" * 10_000_000])
        assert refused.value.code == "too_large"
        assert await client.submit("record", ["small"]) == 1, "nothing was created before"
