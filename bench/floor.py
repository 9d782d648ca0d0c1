"""Floor mode: what two ZeroMQ hops cost on this machine, with nothing of corral's in between.

The load generator sends a timestamp at a steady rate to a forwarder process (corral's own
ZeroMQ server transport on uvloop, no actors, no SQLite), which passes each frame straight
to a sink process (corral's client transport) that notes when it arrived. The percentiles
are the floor under ``--rate``'s submit->start, which crosses the same two hops
(client -> scheduler -> worker) plus everything the scheduler does in between.

With ``curve=True`` (``python -m bench --floor --curve``) the three processes use CURVE keys,
as corral's do with ``--keys``: the forwarder a server pair that accepts the two clients'
keys (User-Id read per frame, as the scheduler does), the others client pairs; so the
difference to a plain floor run is what CURVE costs two hops, with no scheduler around it.

Run as ``python -m bench --floor --rate R --duration S``; the forwarder and the sink are
``python -m bench.floor forward|sink ADDRESS [FILE]`` (keys, if any, in ``CORRAL_FLOOR_KEYS``).
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import uvloop
import zmq

from bench import children
from bench.harness import ROOT, free_address
from bench.report import percentiles
from transport import ClientKeys, ServerKeys, bind, connect

HELLO, DRIVER, READY, STOP, STOPPED = b"sink", b"driver", b"ready", b"stop", b"stopped"
# Nothing here waits a fixed time: the driver starts once the forwarder says the sink is
# there, and stops once the forwarder says it passed STOP on (sockets close with linger 0,
# so a frame still queued at close would be lost).
HANDSHAKE_S = 30.0
KEYS_VARIABLE = "CORRAL_FLOOR_KEYS"  # "SERVER_PUBLIC SERVER_SECRET CLIENT_PUBLIC CLIENT_SECRET"


def new_keys() -> str:
    """Two fresh CURVE pairs, the server's and the clients', as KEYS_VARIABLE's value."""
    pairs = (zmq.curve_keypair(), zmq.curve_keypair())
    return " ".join(key.decode("ascii") for pair in pairs for key in pair)


def server_keys(keys: str) -> ServerKeys | None:
    if not keys:
        return None
    public, secret, client, _ = (key.encode("ascii") for key in keys.split())
    return ServerKeys(public, secret, lambda key: "admin" if key.encode() == client else None)


def client_keys(keys: str) -> ClientKeys | None:
    if not keys:
        return None
    server, _, public, secret = (key.encode("ascii") for key in keys.split())
    return ClientKeys(public, secret, server)


async def forward(address: str, keys: str = "") -> None:
    """Pass every frame to the sink; answer the driver READY once the sink has said hello,
    and STOPPED once STOP is on its way to the sink. Runs until killed."""
    server = bind(address, server_keys(keys))
    sink: bytes | None = None
    driver: bytes | None = None
    while True:
        for peer, frame in await server.recv_batch():
            if frame == HELLO:
                sink = peer
            elif frame == DRIVER:
                driver = peer
            elif sink is not None:
                server.send(sink, frame)
                if frame == STOP:
                    server.send(peer, STOPPED)
            if frame in (HELLO, DRIVER) and sink is not None and driver is not None:
                server.send(driver, READY)


async def collect(address: str, keys: str = "") -> array[float]:
    client = connect(address, client_keys(keys))
    client.send(HELLO)
    delays = array("d")
    while True:
        for frame in await client.recv_batch():
            if frame == STOP:
                return delays
            delays.append(time.time() - struct.unpack("d", frame)[0])


async def _expect(client: Any, wanted: bytes) -> None:
    async with asyncio.timeout(HANDSHAKE_S):
        while wanted not in await client.recv_batch():
            pass


async def drive(address: str, rate: float, duration: float, keys: str = "") -> None:
    client = connect(address, client_keys(keys))
    client.send(DRIVER)
    await _expect(client, READY)  # the sink is connected: nothing sent now is dropped
    total = int(rate * duration)
    began = time.perf_counter()
    for n in range(total):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        client.send(struct.pack("d", time.time()))
    client.send(STOP)
    await _expect(client, STOPPED)
    await client.close()


def run_floor(
    rate: float, duration: float, curve: bool = False, samples: bool = False
) -> dict[str, Any]:
    """One floor run (``curve``: all three processes with CURVE keys; ``samples``: every
    frame's delay too, as ``samples_ms``)."""
    address = free_address()
    out = Path(tempfile.mkdtemp(prefix="corral-floor-")) / "floor.delays"
    command = [sys.executable, "-m", "bench.floor"]
    keys = new_keys() if curve else ""
    env = {**os.environ, KEYS_VARIABLE: keys}
    procs = [
        subprocess.Popen(children.command(*command, "forward", address), cwd=ROOT, env=env),
        subprocess.Popen(children.command(*command, "sink", address, str(out)), cwd=ROOT, env=env),
    ]
    sink = procs[1]
    try:
        asyncio.run(drive(address, rate, duration, keys))  # the rate mode's client loop, too
        sink.wait(timeout=HANDSHAKE_S)  # it has STOP: every frame before it has arrived
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    delays = array("d")
    delays.frombytes(out.read_bytes())
    delays_ms = [d * 1000 for d in delays]
    return {
        "mode": "floor",
        "jobs": int(rate * duration),
        "completed": len(delays),
        "seconds": duration,
        "jobs_per_s": rate,
        "rate": rate,
        "latency_ms": percentiles(delays_ms),
        "scheduler_rss_mb": 0.0,
        "lost": int(rate * duration) - len(delays),
        "duplicated": 0,
        **({"samples_ms": delays_ms} if samples else {}),
    }


def main(argv: list[str]) -> None:
    role, address = argv[0], argv[1]
    keys = os.environ.get(KEYS_VARIABLE, "")
    if role == "forward":
        uvloop.run(forward(address, keys))
    else:
        Path(argv[2]).write_bytes(uvloop.run(collect(address, keys)).tobytes())


if __name__ == "__main__":
    main(sys.argv[1:])
