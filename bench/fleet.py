"""``python -m bench.fleet [IDLE] [JOBS]``: throughput with and without a fleet of idle
workers connected for real (issue 12.13: 1,000 idle workers on another queue used to cut
throughput from 2,667 to 16 jobs/s, the match being quadratic in workers).

The fleet is IDLE (default 1,000) ZeroMQ DEALER sockets in one thread that say hello on
queue ``other`` and heartbeat every second; two real workers run JOBS (default 20,000)
no-op jobs on ``default``. Rounds alternate without and with the fleet, twice.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import zmq

from actors import AsyncClient, job_spec
from bench.harness import Cluster
from transport import protocol as wire

HEARTBEAT_S = 1.0  # the scheduler's default heartbeat interval


def idle_fleet(address: str, size: int, stop: threading.Event) -> None:
    ctx = zmq.Context()
    socks = []
    for i in range(size):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        hello = wire.WorkerHello(
            wire.PROTOCOL_VERSION, f"idle-{i}", 4, ["other"], ["other.task"], [], time.monotonic()
        )
        sock.send(wire.encode(hello))
        socks.append(sock)
    while not stop.is_set():
        for sock in socks:
            while sock.poll(0):
                sock.recv()  # Welcome, HeartbeatAck: read and forget
            sock.send(wire.encode(wire.Heartbeat([], time.monotonic(), 0)))
        stop.wait(HEARTBEAT_S)
    for sock in socks:
        sock.close()
    ctx.term()


async def drain(address: str, jobs: int) -> float:
    async with AsyncClient(address, connect_timeout=20) as client:
        started = time.monotonic()
        ids = await client.submit_many([job_spec("bench.noop")] * jobs)
        await client.wait(ids, timeout=600)
        return jobs / (time.monotonic() - started)


def one_round(idle: int, jobs: int) -> float:
    cluster = Cluster(("--durability", "normal"))
    stop = threading.Event()
    fleet = threading.Thread(target=idle_fleet, args=(cluster.address, idle, stop))
    try:
        cluster.start_scheduler()
        if idle:
            fleet.start()
            time.sleep(3)  # let every hello in before the clock starts
        cluster.start_workers(2, 16)
        return asyncio.run(drain(cluster.address, jobs))
    finally:
        stop.set()
        if fleet.is_alive():
            fleet.join()
        cluster.stop()


def main(argv: list[str]) -> int:
    idle = int(argv[0]) if argv else 1000
    jobs = int(argv[1]) if len(argv) > 1 else 20_000
    print("idle workers  jobs/s")
    for size in (0, idle, 0, idle):
        print(f"{size:12,}  {one_round(size, jobs):,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
