"""What a ZeroMQ ROUTER hands the gateway when a peer sends more than one frame."""

from __future__ import annotations

import asyncio

import zmq

import transport
from tests.helpers.procs import free_address


async def test_a_multipart_message_is_one_garbage_frame_and_the_next_arrives_whole() -> None:
    server = transport.bind(free_address())
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.address)
    try:
        raw.send_multipart([b"one", b"two", b"three"])  # a DEALER of ours sends one part
        raw.send(b"after")
        got: list[tuple[bytes, bytes]] = []
        while len(got) < 2:
            got += await asyncio.wait_for(server.recv_batch(), 5)
        (peer_a, first), (peer_b, second) = got
        assert peer_a == peer_b
        assert first == b""  # not decodable: the gateway refuses it with an error reply
        assert second == b"after"
    finally:
        raw.close()
        await server.close()
