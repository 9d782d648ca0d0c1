"""Ceiling mode: the throughput mode's work with nothing of corral's, so that corral's figure
reads as a share of what this machine, these libraries and this database allow.

``python -m bench --ceiling [--jobs N] [--workers W] [--concurrency C] [--db postgresql://...]``
(``--with-ceiling`` runs it after a throughput run and adds the ratio). The same two ZeroMQ
hops as corral (DEALER -> ROUTER, msgspec msgpack frames), three kinds of processes:

- the load generator (this process) submits frames of ``SUBMIT_CHUNK`` jobs, ``IN_FLIGHT``
  of them awaiting acknowledgement, as the bench drives corral's client, and counts the
  completions the scheduler pushes back;
- a stripped scheduler (``python -m bench.ceiling scheduler``, uvloop) gives each job an id
  and a token, persists everything that arrived while the last commit ran in ONE
  transaction (new jobs: SQLite ``executemany`` / PostgreSQL binary ``COPY``; results: one
  compare-and-swap UPDATE batch on id, token and status), acknowledges only after COMMIT,
  and hands committed jobs to the workers' free slots (C each, one frame per worker per turn);
- W workers (``python -m bench.ceiling worker``, blocking pyzmq) decode each job's arguments,
  call a no-op, record the job id (``lost``/``duplicated`` are counted as for corral) and
  send one results frame per assignment frame.

Durability as corral's defaults (``bench/ceiling_stores.py``): SQLite in WAL mode with
``synchronous=FULL``, PostgreSQL with ``synchronous_commit=on``; at most 20,000 operations
per transaction, as corral's store actor.

What is stripped (all of corral but the hops, the encoding and the commits): actors and
their messages, the gateway's checks, priorities, queues and strategies, leases (no lease
row, no expiry, no heartbeats), retries, timeouts, workflows, idempotency keys, waits per
job (completions go to the one load generator), metrics and events, leader election and
fencing of commits, recovery; the row is six columns (id, task, args, status, token,
result) with only its primary key, where corral's has about 25 and five indexes; the worker
calls the function directly (no handler task, no context, no pool).
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import msgspec
import zmq

from bench import children
from bench.ceiling_stores import PostgresStore, SqliteStore
from bench.harness import ROOT, free_address, wait_for_port
from bench.report import percentiles

SUBMIT_CHUNK = 5_000  # jobs per submit frame, as corral's client and bench send
IN_FLIGHT = 4  # submit frames awaiting acknowledgement at once, as bench/modes.py
HIGH_WATER_MARK = 100_000  # frames, as corral's transport: never reached by batches
MAX_BATCH_OPS = 20_000  # operations per transaction at most, as corral's store actor
DB_ENV = "CORRAL_CEILING_DB"  # the database, out of the process list (a DSN has a password)
ARGS = msgspec.msgpack.encode([])  # a no-op's arguments, as corral's client encodes ()
RESULT = msgspec.msgpack.encode(None)


class Msg(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Base of the ceiling's frames (tagged by class name, as corral's protocol)."""


class ClientHello(Msg, frozen=True):
    workers: int  # answer Ready once this many workers said hello


class Ready(Msg, frozen=True):
    pass


class Submit(Msg, frozen=True):
    request_id: int
    jobs: list[tuple[str, bytes]]  # (task name, msgpack arguments)


class Submitted(Msg, frozen=True):
    request_id: int
    first_id: int  # the chunk's ids are first_id, first_id + 1, ...


class WorkerHello(Msg, frozen=True):
    slots: int


class Assign(Msg, frozen=True):
    jobs: list[tuple[int, int, str, bytes]]  # (id, token, task, args)


class Results(Msg, frozen=True):
    done: list[tuple[int, int, bytes]]  # (id, token, result)


class ResultsAck(Msg, frozen=True):
    ids: list[int]


class Done(Msg, frozen=True):
    ids: list[int]


class Stop(Msg, frozen=True):
    pass


class Stopped(Msg, frozen=True):
    stored: int  # rows SUCCEEDED in the database at the end
    commits: int
    rss_mb: float


Frame = ClientHello | Submit | WorkerHello | Results | Stop | Ready | Submitted | Assign | Done
encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder(Frame | ResultsAck | Stopped).decode


def socket(kind: int, address: str, bind: bool = False) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(kind)
    for option in (zmq.SNDHWM, zmq.RCVHWM):
        sock.setsockopt(option, HIGH_WATER_MARK)
    sock.setsockopt(zmq.LINGER, 2000)  # a Stop queued at exit still goes out
    if bind:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.bind(address)
    else:
        sock.connect(address)
    return sock


class Scheduler:
    """The stripped scheduler: a reader callback decodes every frame as it arrives (and
    hands out committed jobs) while ``run`` commits what arrived before (group commit)."""

    def __init__(self, sock: zmq.Socket[bytes], store: SqliteStore | PostgresStore) -> None:
        self.sock, self.store = sock, store
        self.next_id = self.next_token = 1
        self.pending: collections.deque[tuple[bytes, Submit | Results]] = collections.deque()
        self.ready: collections.deque[tuple[int, int, str, bytes]] = collections.deque()
        self.free: dict[bytes, int] = {}  # worker -> free slots
        self.client: bytes | None = None
        self.want_workers = 0
        self.stopping = False  # finish what is pending, then stop
        self.commits = 0
        self.wake = asyncio.Event()

    def on_readable(self) -> None:
        """Drain the socket (its descriptor is edge-triggered: every call may take the edge)."""
        while int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            peer, frame = self.sock.recv_multipart(zmq.NOBLOCK)
            self.handle(peer, decode(frame))
        self.dispatch()

    def handle(self, peer: bytes, msg: Any) -> None:
        match msg:
            case Submit():
                self.pending.append((peer, msg))
                self.wake.set()
            case Results(done):
                self.free[peer] += len(done)  # the slot is free once the result is in
                self.pending.append((peer, msg))
                self.wake.set()
            case WorkerHello(slots):
                self.free[peer] = slots
                self.say_ready()
            case ClientHello(workers):
                self.client, self.want_workers = peer, workers
                self.say_ready()
            case Stop():
                self.stopping = True
                self.wake.set()

    def say_ready(self) -> None:
        if self.client is not None and len(self.free) >= self.want_workers:
            self.send(self.client, Ready())

    def send(self, peer: bytes, msg: Msg) -> None:
        self.sock.send_multipart([peer, encode(msg)], zmq.NOBLOCK)

    def dispatch(self) -> None:
        """Committed jobs to the workers with free slots: one frame per worker per turn."""
        for worker, free in self.free.items():
            if not self.ready:
                return
            if free:
                take = min(free, len(self.ready))
                self.free[worker] = free - take
                self.send(worker, Assign([self.ready.popleft() for _ in range(take)]))

    def take(self) -> tuple[list[tuple[Any, ...]], list[Any], list[Any], dict[bytes, list[int]]]:
        """The next commit: whole frames, in arrival order, until MAX_BATCH_OPS is reached."""
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[int, int, bytes]] = []
        submitted: list[tuple[bytes, int, int]] = []  # (client, request id, first id)
        finished: dict[bytes, list[int]] = {}  # worker -> job ids
        while self.pending and len(inserts) + len(updates) < MAX_BATCH_OPS:
            peer, msg = self.pending.popleft()
            if isinstance(msg, Submit):
                first, token = self.next_id, self.next_token
                self.next_id += len(msg.jobs)
                self.next_token += len(msg.jobs)
                for n, (task, args) in enumerate(msg.jobs):
                    inserts.append((first + n, task, args, "QUEUED", token + n))
                submitted.append((peer, msg.request_id, first))
            else:
                updates += msg.done
                finished.setdefault(peer, []).extend(i for i, _token, _result in msg.done)
        return inserts, updates, submitted, finished

    async def run(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.on_readable)
        self.on_readable()
        while self.pending or not self.stopping:
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
                continue
            inserts, updates, submitted, finished = self.take()
            await self.store.commit(inserts, updates)
            self.commits += 1
            self.ready.extend((row[0], row[4], row[1], row[2]) for row in inserts)
            for peer, request_id, first in submitted:
                self.send(peer, Submitted(request_id, first))
            for worker, ids in finished.items():
                self.send(worker, ResultsAck(ids))
            if finished and self.client is not None:
                self.send(self.client, Done([i for ids in finished.values() for i in ids]))
            self.on_readable()  # hand the new jobs out; the sends may have taken the edge
            await self.store.after_replies()
        for worker in self.free:
            self.send(worker, Stop())
        assert self.client is not None
        stored = await self.store.succeeded()
        self.send(self.client, Stopped(stored, self.commits, rss_mb()))
        await self.store.close()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


async def serve(address: str, db: str) -> None:
    if db.startswith(("postgresql://", "postgres://")):
        store: SqliteStore | PostgresStore = await PostgresStore().open(db)
    else:
        store = SqliteStore(db)
    sock = socket(zmq.ROUTER, address, bind=True)
    await Scheduler(sock, store).run()
    asyncio.get_running_loop().remove_reader(sock.fileno())
    sock.close()  # with its linger: the last Stop and Stopped frames go out first
    zmq.Context.instance().term()


def work(address: str, slots: int, out: str) -> None:
    """A stripped worker: run each assigned job's no-op, send the results of each frame."""
    sock = socket(zmq.DEALER, address)
    sock.send(encode(WorkerHello(slots)))
    executed = array("q")

    def noop(*args: Any) -> None:
        return None

    while True:
        msg = decode(sock.recv())
        if isinstance(msg, Assign):
            done = []
            for job_id, token, _task, args in msg.jobs:
                noop(*msgspec.msgpack.decode(args))
                executed.append(job_id)
                done.append((job_id, token, RESULT))
            sock.send(encode(Results(done)))
        elif isinstance(msg, Stop):
            break
    Path(out).write_bytes(executed.tobytes())
    sock.close(linger=0)


def drive(
    address: str, jobs: int, workers: int, timeout: float, procs: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    """Submit ``jobs`` (IN_FLIGHT frames in flight) and count completions; stop the rest.
    Raises RuntimeError if one of ``procs`` dies or nothing arrives for ``timeout`` s."""
    from bench.modes import busy_percent, cpu_times

    sock = socket(zmq.DEALER, address)

    def recv(watch: list[subprocess.Popen[bytes]] = procs) -> Any:
        deadline = time.monotonic() + timeout
        while not sock.poll(1000):
            if any(proc.poll() is not None for proc in watch) or time.monotonic() > deadline:
                raise RuntimeError("a ceiling process died, or all went silent")
        return decode(sock.recv())

    sock.send(encode(ClientHello(workers)))
    assert isinstance(recv(), Ready)
    sizes = [min(SUBMIT_CHUNK, jobs - start) for start in range(0, jobs, SUBMIT_CHUNK)]
    chunks = iter(enumerate(sizes))
    ids: list[int] = []
    done = acked = 0  # jobs completed, submit frames acknowledged
    started, cpu_before = time.perf_counter(), cpu_times()

    def submit_next() -> None:
        chunk = next(chunks, None)
        if chunk is not None:
            sock.send(encode(Submit(chunk[0], [("bench.noop", ARGS)] * chunk[1])))

    for _ in range(IN_FLIGHT):
        submit_next()
    while done < jobs or acked < len(sizes):
        match recv():
            case Submitted(request_id, first):
                ids += range(first, first + sizes[request_id])
                acked += 1
                submit_next()
            case Done(finished):
                done += len(finished)
    seconds, cpu = time.perf_counter() - started, busy_percent(cpu_before, cpu_times())
    sock.send(encode(Stop()))
    stopped = recv(procs[:1])  # the workers may have stopped already
    assert isinstance(stopped, Stopped)
    sock.close(linger=0)
    return {"completed": done, "seconds": seconds, "cpu": cpu, "ids": ids, "end": stopped}


def run_ceiling(
    jobs: int, workers: int, slots: int, db: str | None = None, timeout: float = 600.0
) -> dict[str, Any]:
    """One ceiling run on fresh processes; the bench's result keys, plus the backend, the
    rows the database holds as SUCCEEDED at the end, and the number of commits."""
    folder = Path(tempfile.mkdtemp(prefix="corral-ceiling-"))
    address = free_address()
    env = {**os.environ, DB_ENV: db or str(folder / "ceiling.db")}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    command = [sys.executable, "-m", "bench.ceiling"]
    scheduler = subprocess.Popen(
        children.command(*command, "scheduler", address), cwd=ROOT, env=env
    )
    procs = [scheduler]
    try:
        wait_for_port(address, scheduler)
        for n in range(workers):
            out = str(folder / f"worker-{n}.ids")
            procs.append(
                subprocess.Popen(
                    children.command(*command, "worker", address, str(slots), out),
                    cwd=ROOT,
                    env=env,
                )
            )
        run = drive(address, jobs, workers, timeout, procs)
        for proc in procs:
            proc.wait(timeout=30)  # each stops on the Stop it was sent
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    runs: collections.Counter[int] = collections.Counter()
    for path in folder.glob("worker-*.ids"):
        runs.update(array("q", path.read_bytes()))
    shutil.rmtree(folder)  # the ids and a SQLite file (9 MB for 200k jobs): nothing to keep
    end: Stopped = run["end"]
    return {
        "mode": "ceiling",
        "backend": "postgresql" if db else "sqlite",
        "jobs": jobs,
        "completed": run["completed"],
        "seconds": run["seconds"],
        "jobs_per_s": jobs / run["seconds"],
        "latency_ms": percentiles([]),
        "scheduler_rss_mb": end.rss_mb,
        "workers": workers,
        "machine_cpu_busy_pct": run["cpu"],
        "stored_succeeded": end.stored,
        "commits": end.commits,
        "lost": sum(1 for i in run["ids"] if runs[i] == 0),
        "duplicated": sum(n - 1 for n in runs.values() if n > 1),
    }


def beside(corral: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """corral's throughput result with the ceiling's figure of the same run and the ratio."""
    return {
        **corral,
        "ceiling_jobs_per_s": ceiling["jobs_per_s"],
        "ratio_to_ceiling": round(corral["jobs_per_s"] / ceiling["jobs_per_s"], 3),
        "ceiling_lost": ceiling["lost"],
        "ceiling_duplicated": ceiling["duplicated"],
    }


def main(argv: list[str]) -> None:
    role, address = argv[0], argv[1]
    if role == "scheduler":
        import uvloop

        uvloop.run(serve(address, os.environ[DB_ENV]))
    else:
        work(address, int(argv[2]), argv[3])


if __name__ == "__main__":
    main(sys.argv[1:])
