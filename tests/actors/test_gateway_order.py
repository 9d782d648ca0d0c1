"""The gateway's send order: work frames before the replies of the same turn."""

from __future__ import annotations

import asyncio

import msgspec

from actors.scheduler.gateway import Gateway
from actors.scheduler.messages import Send
from transport import protocol as wire
from transport.base import Peer, ServerTransport


class Recording(ServerTransport):
    """A server end that only records what is sent, in order."""

    address = "recording://"

    def __init__(self) -> None:
        self.sent: list[tuple[Peer, wire.Message]] = []

    async def recv_batch(self, max_frames: int = 1024) -> list[tuple[Peer, bytes]]:
        await asyncio.Event().wait()
        return []

    def send(self, peer: Peer, frame: bytes) -> None:
        self.sent.append((peer, wire.decode_reply(frame)))

    async def close(self) -> None:
        pass


def assignment(job_id: int, token: int = 1) -> wire.Assignment:
    return wire.Assignment(job_id, token, "t", msgspec.Raw(b"\x90"), msgspec.Raw(b"\x80"), 1)


async def test_an_assign_leaves_before_replies_queued_ahead_of_it_in_the_same_turn() -> None:
    # The scheduler's reply to a submission and the dispatcher's Assign for that job reach
    # the gateway in the same turn, the reply first: the job starts before the client hears.
    transport = Recording()
    gateway = Gateway(transport, 1.0, "test")
    client, worker = b"client", b"worker"
    gateway.tell(Send(client, wire.Submitted(7, [1])))
    gateway.tell(Send(client, wire.Outcomes(8, [])))
    gateway.tell(Send(worker, wire.Assign([assignment(1)])))
    gateway.tell(Send(worker, wire.StopJob(2, 1, "cancelled")))
    task = asyncio.create_task(gateway._serve())
    try:
        for _ in range(100):
            if len(transport.sent) == 4:
                break
            await asyncio.sleep(0)
        kinds = [type(message).__name__ for _, message in transport.sent]
        assert kinds == ["Assign", "StopJob", "Submitted", "Outcomes"]
    finally:
        task.cancel()


async def test_replies_are_not_held_past_the_end_of_the_turn() -> None:
    transport = Recording()
    gateway = Gateway(transport, 1.0, "test")
    task = asyncio.create_task(gateway._serve())
    try:
        for request_id in range(3):
            gateway.tell(Send(b"client", wire.Submitted(request_id, [request_id])))
            for _ in range(100):
                if len(transport.sent) == request_id + 1:
                    break
                await asyncio.sleep(0)
            assert [m.request_id for _, m in transport.sent] == list(range(request_id + 1))
    finally:
        task.cancel()


def test_a_network_peer_cannot_take_an_in_process_peers_id() -> None:
    """ZeroMQ lets a peer choose its routing id, a leading zero byte included: one that
    named itself like the dashboard's in-process peers would have its replies (and the
    events of a stream it acknowledged or ended) go to the dashboard. Its frames are
    refused unread, and nothing reaches the in-process side."""
    from actors.scheduler.gateway import LOCAL_PEER

    transport = Recording()
    gateway = Gateway(transport, 1.0, "test")
    delivered: list[tuple[bytes, wire.Message]] = []
    gateway.local = lambda peer, message: delivered.append((peer, message))
    forged = LOCAL_PEER + b"1"
    for message in (wire.ClientHello(wire.PROTOCOL_VERSION), wire.GetStatus(1)):
        gateway._route(forged, wire.encode(message), [])
    assert delivered == []
    assert transport.sent == []
    assert gateway.forbidden_frames == 2
    gateway._send(LOCAL_PEER + b"2", wire.Submitted(3, [1]))  # a real in-process reply
    assert [peer for peer, _ in delivered] == [LOCAL_PEER + b"2"]
