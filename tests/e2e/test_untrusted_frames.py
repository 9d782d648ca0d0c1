"""Every frame from the network is untrusted: garbage gets a clear error reply and changes
nothing, and the scheduler keeps serving. Raw ZeroMQ DEALER sockets against a real scheduler
process."""

from __future__ import annotations

import random

import msgspec
import pytest
import zmq

from tests.helpers.cluster import Cluster
from transport import protocol as wire

pytestmark = pytest.mark.slow


def _exchange(sock: zmq.Socket[bytes], parts: list[bytes]) -> wire.ErrorReply:
    sock.send_multipart(parts)
    assert sock.poll(5000), "the scheduler did not answer the frame"
    reply = wire.decode_reply(sock.recv())
    assert isinstance(reply, wire.ErrorReply), reply
    return reply


@pytest.fixture
def raw_socket() -> zmq.Socket[bytes]:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    yield sock
    sock.close()


async def test_garbage_frames_get_error_replies_and_change_nothing(
    cluster: Cluster, raw_socket: zmq.Socket[bytes]
) -> None:
    cluster.start()
    raw_socket.connect(cluster.address)
    hello = wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION))

    rng = random.Random(2026)
    for _ in range(200):  # random garbage, reproducible
        frame = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 128)))
        assert _exchange(raw_socket, [frame]).code in {"bad_frame", "invalid"}
    invalid_utf8 = b"\x93\xa6Submit\x01\x91\x91\xa2\xff\xfe"  # a task name that is not UTF-8
    assert _exchange(raw_socket, [invalid_utf8]).code == "bad_frame"
    assert _exchange(raw_socket, [b""]).code == "bad_frame"
    assert _exchange(raw_socket, [wire.encode(wire.ClientHello(99))]).code == "protocol_version"
    # A frame that is valid msgpack but a message the scheduler never accepts.
    assert _exchange(raw_socket, [wire.encode(wire.Assign([]))]).code == "invalid"
    # A well-formed request before saying hello.
    assert _exchange(raw_socket, [wire.encode(wire.GetStatus(1))]).code == "hello_first"
    oversized = b"\x00" * (wire.MAX_FRAME_BYTES + 1)
    assert _exchange(raw_socket, [oversized]).code == "too_large"
    assert _exchange(raw_socket, [b"a", b"b", b"c"]).code == "bad_frame"

    raw_socket.send(hello)
    assert raw_socket.poll(5000)
    assert isinstance(wire.decode_reply(raw_socket.recv()), wire.Welcome)
    # Right type, wrong field types / out-of-range values: refused by the typed decode.
    bad_submit = msgspec.msgpack.encode(["Submit", 7, [["", b"x"]]])
    assert _exchange(raw_socket, [bad_submit]).code == "invalid"
    negative_priority = msgspec.msgpack.encode(["Submit", 8, [["t", [], {}, 10**9]]])
    assert _exchange(raw_socket, [negative_priority]).code == "invalid"
    args_not_a_list = wire.encode(wire.Submit(9, [wire.JobSpec("t", args=wire.pack({"a": 1}))]))
    reply = _exchange(raw_socket, [args_not_a_list])
    assert (reply.code, reply.request_id) == ("invalid", 9)
    unknown_parent = wire.encode(wire.Submit(10, [wire.JobSpec("t", depends_on=[12345])]))
    assert _exchange(raw_socket, [unknown_parent]).code == "unknown_parent"

    async with cluster.client() as client:
        status = await client.status()
        assert sum(status.jobs.values()) == 0, "no refused frame created a job"
        job_id = await client.submit("record", [1])
        assert job_id == 1
