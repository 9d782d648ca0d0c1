"""Floor mode: what two ZeroMQ hops cost on this machine, with nothing of corral's in between.

The load generator sends a timestamp at a steady rate to a forwarder process (corral's own
ZeroMQ server transport on uvloop, no actors, no SQLite), which passes each frame straight
to a sink process (corral's client transport) that notes when it arrived. The percentiles
are the floor under ``--rate``'s submit->start, which crosses the same two hops
(client -> scheduler -> worker) plus everything the scheduler does in between.

Run as ``python -m bench --floor --rate R --duration S``; the forwarder and the sink are
``python -m bench.floor forward|sink ADDRESS [FILE]``.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import uvloop

from bench.harness import ROOT, free_address
from bench.report import percentiles
from transport import bind, connect

HELLO, DRIVER, READY, STOP, STOPPED = b"sink", b"driver", b"ready", b"stop", b"stopped"
# Nothing here waits a fixed time: the driver starts once the forwarder says the sink is
# there, and stops once the forwarder says it passed STOP on (sockets close with linger 0,
# so a frame still queued at close would be lost).
HANDSHAKE_S = 30.0


async def forward(address: str) -> None:
    """Pass every frame to the sink; answer the driver READY once the sink has said hello,
    and STOPPED once STOP is on its way to the sink. Runs until killed."""
    server = bind(address)
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


async def collect(address: str) -> array[float]:
    client = connect(address)
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


async def drive(address: str, rate: float, duration: float) -> None:
    client = connect(address)
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


def run_floor(rate: float, duration: float) -> dict[str, Any]:
    address = free_address()
    out = Path(tempfile.mkdtemp(prefix="corral-floor-")) / "floor.delays"
    command = [sys.executable, "-m", "bench.floor"]
    procs = [
        subprocess.Popen([*command, "forward", address], cwd=ROOT),
        subprocess.Popen([*command, "sink", address, str(out)], cwd=ROOT),
    ]
    sink = procs[1]
    try:
        asyncio.run(drive(address, rate, duration))  # the rate mode's client loop, too
        sink.wait(timeout=HANDSHAKE_S)  # it has STOP: every frame before it has arrived
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    delays = array("d")
    delays.frombytes(out.read_bytes())
    return {
        "mode": "floor",
        "jobs": int(rate * duration),
        "completed": len(delays),
        "seconds": duration,
        "jobs_per_s": rate,
        "rate": rate,
        "latency_ms": percentiles([d * 1000 for d in delays]),
        "scheduler_rss_mb": 0.0,
        "lost": int(rate * duration) - len(delays),
        "duplicated": 0,
    }


def main(argv: list[str]) -> None:
    role, address = argv[0], argv[1]
    if role == "forward":
        uvloop.run(forward(address))
    else:
        Path(argv[2]).write_bytes(uvloop.run(collect(address)).tobytes())


if __name__ == "__main__":
    main(sys.argv[1:])
