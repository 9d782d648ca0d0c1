"""``python -m bench.worker_path [JOBS] [BATCH] [ROUNDS] [async|sync]``: the worker agent's
CPU per job alone, for comparing versions of the worker's hot path (issue 19, part 3).

One real ``Worker`` (an async no-op task, as the throughput mode's; ``sync``: a plain
function, run in the worker's threads) talks over the in-memory
transport to a minimal scheduler in the same process that welcomes it, keeps it full
(an Assign of BATCH jobs whenever BATCH slots came back; 64 slots, as the throughput
mode's workers) and acknowledges every Results frame and heartbeat. The process's CPU
time over JOBS jobs, less the time spent in the stand-in scheduler (measured around its
own work), divided by JOBS; the median of ROUNDS rounds (default 5) is printed, with the
rounds. No ZeroMQ and no SQLite: the agent's own Python, with nothing else in the way.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from actors.worker.agent import Worker
from transport import protocol as wire
from transport.memory import MemoryServer

SLOTS = 64


async def _noop() -> None:
    return None


def _sync_noop() -> None:
    return None


async def one_round(jobs: int, batch: int, index: int, sync: bool = False) -> tuple[float, float]:
    """Worker CPU µs per job over ``jobs`` jobs, and results per Results frame."""
    address = f"mem://bench-worker-path-{index}"
    server = MemoryServer(address)
    registry = {"bench.noop": _sync_noop if sync else _noop}
    worker = Worker(address, name="path", concurrency=SLOTS, registry=registry, pool="thread")
    serving = asyncio.create_task(worker.run())
    empty_args, empty_kwargs = wire.pack([]), wire.pack({})
    next_id, done, seq, credits, frames_in = 1, 0, 0, 0, 0
    peer = b""
    own = 0.0  # CPU spent by this stand-in scheduler
    started = 0.0

    def assign(n: int) -> None:
        nonlocal next_id, seq
        seq += 1
        assignments = [
            wire.Assignment(job_id, 1, "bench.noop", empty_args, empty_kwargs, 1)
            for job_id in range(next_id, next_id + n)
        ]
        next_id += n
        server.send(peer, wire.encode(wire.Assign(assignments, seq, time.monotonic())))

    while done < jobs:
        frames = await server.recv_batch()
        t0 = time.thread_time()
        for peer, frame in frames:
            match wire.decode_request(frame):
                case wire.WorkerHello(sent_at=sent_at):
                    welcome = wire.Welcome(wire.PROTOCOL_VERSION, 1.0, "path", 30.0)
                    server.send(peer, wire.encode(welcome))
                    server.send(peer, wire.encode(wire.HeartbeatAck(sent_at)))
                    started = time.process_time()
                    own = 0.0
                    assign(min(SLOTS, jobs))
                case wire.Heartbeat(sent_at=sent_at):
                    server.send(peer, wire.encode(wire.HeartbeatAck(sent_at)))
                case wire.Results(results=results, credits=freed):
                    done += len(results)
                    frames_in += 1
                    credits += len(results) if freed == -1 else freed
                    server.send(peer, wire.encode(wire.ResultsAck([r.job_id for r in results], [])))
                    while credits >= batch and next_id <= jobs:
                        n = min(batch, jobs - next_id + 1)
                        credits -= n
                        assign(n)
                case _:
                    pass
        own += time.thread_time() - t0
    spent = time.process_time() - started - own
    worker.stop()
    worker.stop()
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    await server.close()
    return spent * 1e6 / jobs, jobs / max(1, frames_in)


def main(argv: list[str]) -> int:
    jobs = int(argv[0]) if argv else 100_000
    batch = int(argv[1]) if len(argv) > 1 else SLOTS
    rounds = int(argv[2]) if len(argv) > 2 else 5
    sync = len(argv) > 3 and argv[3] == "sync"
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - platforms without uvloop
        run = asyncio.run
    rows = [run(one_round(jobs, batch, i, sync)) for i in range(rounds)]
    figures = [cpu for cpu, _ in rows]
    print(
        json.dumps(
            {
                "jobs": jobs,
                "batch": batch,
                "task": "sync" if sync else "async",
                "worker_cpu_us_per_job": round(statistics.median(figures), 2),
                "rounds": [round(f, 2) for f in figures],
                "results_per_frame": round(statistics.median(r for _, r in rows), 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
