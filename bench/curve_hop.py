"""``python -m bench.curve_hop [N] [GAP_MS]``: what CURVE adds to one ZeroMQ hop, paired.

A sender process keeps three connections to a receiver process (corral's transport, uvloop
on both sides): plain, keyed (the receiver reading each frame's User-Id, as the scheduler
does), and keyed with the User-Id not read. Every GAP_MS (default 5, i.e. 200 messages a
second, as ``--rate 200``) it sends a timestamp on one of them, the three in a new random
order each cycle, N per connection (default 3,000); the receiver notes each one-way
delay. So the three kinds are measured at the same moments of the machine, unlike runs one
after the other: keyed minus keyed-without-User-Id is the cost of reading the User-Id,
keyed-without-User-Id minus plain that of the encryption (libzmq and libsodium).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import struct
import sys
import time
from typing import Any

import uvloop
import zmq

from bench.report import percentiles
from transport.curve import ClientKeys, ServerKeys
from transport.zeromq import ZmqClient, ZmqServer

KINDS = ("plain", "keyed", "keyed, User-Id not read")
STOP = b"stop"
Keys = tuple[bytes, bytes, bytes, bytes]  # server public, secret; client public, secret


async def _receive(keys: Keys, addresses: Any, results: Any) -> None:
    server_keys = ServerKeys(keys[0], keys[1], lambda key: "admin")
    servers = [
        ZmqServer("tcp://127.0.0.1:0"),
        *(ZmqServer("tcp://127.0.0.1:0", server_keys) for _ in "kk"),
    ]
    servers[2]._s.user_ids = False  # as a server without the per-frame User-Id read
    addresses.put([server.address for server in servers])
    delays: dict[str, list[float]] = {kind: [] for kind in KINDS}

    async def read(server: ZmqServer, kind: str) -> None:
        while True:
            for _, frame in await server.recv_batch():
                if frame == STOP:
                    return
                if len(frame) == 8:
                    delays[kind].append((time.time() - struct.unpack("d", frame)[0]) * 1000)

    await asyncio.gather(*(read(server, kind) for server, kind in zip(servers, KINDS, strict=True)))
    results.put(delays)


def _receiver(keys: Keys, addresses: Any, results: Any) -> None:
    uvloop.run(_receive(keys, addresses, results))


async def _send(keys: Keys, addresses: list[str], n: int, gap_s: float) -> None:
    client_keys = ClientKeys(keys[2], keys[3], keys[0])
    clients = [ZmqClient(addresses[0]), *(ZmqClient(a, client_keys) for a in addresses[1:])]
    for client in clients:
        client.send(b"hello")  # connects and, for the keyed ones, completes the handshake
    await asyncio.sleep(1.0)  # not a wait for a condition: a warm-up before measuring
    began = time.perf_counter()
    order: list[int] = []
    for i in range(n * len(clients)):
        if not order:
            order = random.sample(range(len(clients)), len(clients))
        delay = began + i * gap_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        clients[order.pop()].send(struct.pack("d", time.time()))
    for client in clients:
        client.send(STOP)


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 3000
    gap_s = (float(argv[1]) if len(argv) > 1 else 5.0) / 1000
    server, client = zmq.curve_keypair(), zmq.curve_keypair()
    keys = (*server, *client)
    addresses: Any = multiprocessing.Queue()
    results: Any = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_receiver, args=(keys, addresses, results))
    receiver.start()
    uvloop.run(_send(keys, addresses.get(timeout=30), n, gap_s))
    delays = results.get(timeout=60)
    receiver.join()
    print(f"one hop, {n} messages per kind, one every {gap_s * 1000:g} ms (ms):")
    for kind in KINDS:
        figures = percentiles(delays[kind])
        print(f"  {kind:24} p50 {figures['p50']:.3f}  p99 {figures['p99']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
