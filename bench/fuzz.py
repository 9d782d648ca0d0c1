"""Fuzzing a live scheduler (issue 16): hostile frames from several raw ZeroMQ DEALER peers
(``bench.garbage``) while a real worker runs an honest client's jobs, and what to measure.

Peers take turns in three roles: a stranger that never says a valid hello, a client that
says ``ClientHello`` first, a worker that says ``WorkerHello`` as ``fuzz-N`` on a queue no
honest job uses. Each sends its share of the frames in windows of ``WINDOW``, then a
sentinel (``GetJob`` of a far id under a request id of its own) and waits for its answer
before the next window: the scheduler is never more than one window behind, so a frame
that wedges it shows as a sentinel not answered in ``ANSWER_S``, and the figures measure
the scheduler, not ZeroMQ's queues. Every reply is decoded and counted by type (errors by
code). ``answer=False`` (a keyed scheduler, unkeyed fuzzers): no sentinels, and every reply
at all is counted, since none may come.

``python -m bench --fuzz`` runs it (``run_fuzz``); ``tests/e2e/test_fuzz.py`` runs a few
thousand frames of it against the test cluster.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from actors import AsyncClient, job_spec
from bench.frames import FAR_ID, FUZZ_NAME, VALID_QUEUE, as_received, refused_at_gateway
from bench.garbage import Garbage
from transport import protocol as wire
from transport.errors import BadFrame

WINDOW = 50  # frames a peer sends before it waits for its sentinel's answer
ANSWER_S = 30.0  # a sentinel unanswered this long: the scheduler is wedged (loaded 2 cores)
SENTINEL_RID = 2**61  # request ids from here on are the sentinels' (fuzz frames rarely hit it)
ROLES = ("stranger", "client", "worker")


@dataclass
class Tally:
    """What the fuzz peers sent and heard."""

    sent: Counter[str] = field(default_factory=Counter)  # frames by kind
    frames: int = 0
    expected_bad: int = 0  # frames the gateway must refuse and count in bad_frames
    replies: Counter[str] = field(default_factory=Counter)  # by type, ErrorReply by code
    unreadable: int = 0  # replies decode_reply refused: a scheduler bug
    stalls: int = 0  # sentinels not answered within ANSWER_S
    redrawn: int = 0  # mutants dropped because they could have changed state
    unsent: int = 0  # answer=False: frames ZeroMQ had no connection to queue on
    results_taken: int = 0  # forged results a ResultsAck acknowledged: must stay 0

    def count(self, frame: bytes) -> None:
        try:
            reply = wire.decode_reply(frame)
        except BadFrame:
            self.unreadable += 1
            return
        name = type(reply).__name__
        if isinstance(reply, wire.ResultsAck):
            self.results_taken += len(reply.job_ids)
        self.replies[f"error:{reply.code}" if isinstance(reply, wire.ErrorReply) else name] += 1


def _answers(frame: bytes, rid: int) -> bool:
    try:
        reply = wire.decode_reply(frame)
    except BadFrame:
        return False
    return getattr(reply, "request_id", None) == rid


async def _peer(
    n: int, address: str, frames: int, seed: int, known_ids: int, big: bool, answer: bool,
    tally: Tally, on_frames: Callable[[int], None],
) -> None:  # fmt: skip
    role = ROLES[n % len(ROLES)]
    garbage = Garbage(seed * 1000 + n, known_ids, big)
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    for option in (zmq.LINGER, zmq.SNDHWM, zmq.RCVHWM):
        sock.setsockopt(option, 0)
    sock.connect(address)

    async def drain(wait_ms: int, rid: int | None = None) -> bool:
        """Count replies until quiet for ``wait_ms`` (or until the one answering ``rid``)."""
        while await sock.poll(wait_ms):
            frame = await sock.recv()
            tally.count(frame)
            if rid is not None and _answers(frame, rid):
                return True
        return False

    try:
        if role == "client":
            await sock.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        elif role == "worker":
            hello = wire.WorkerHello(wire.PROTOCOL_VERSION, f"{FUZZ_NAME}-{n}", 2, ["fuzz"])
            await sock.send(wire.encode(hello))
        sent = 0
        while sent < frames:
            window = 0
            while window < WINDOW and sent < frames:
                shot = garbage.shot()
                for parts in shot.messages:
                    try:
                        await sock.send_multipart(parts, flags=0 if answer else zmq.NOBLOCK)
                    except zmq.Again:  # no connection to queue it on (a refused handshake)
                        tally.unsent += 1
                        continue
                    tally.expected_bad += refused_at_gateway(as_received(parts))
                tally.sent[shot.kind] += len(shot.messages)
                window += len(shot.messages)
                sent += len(shot.messages)
            tally.frames += window
            on_frames(window)
            if answer:
                rid = SENTINEL_RID + n * 10**9 + sent
                await sock.send(wire.encode(wire.GetJob(rid, FAR_ID)))
                if not await drain(int(ANSWER_S * 1000), rid):
                    tally.stalls += 1
            else:
                await drain(0)
        await drain(1000)  # the last answers (a Wait on a running job answers later)
    finally:
        tally.redrawn += garbage.redrawn
        sock.close()


async def fuzz_peers(
    address: str,
    frames: int,
    seed: int = 1,
    peers: int = 6,
    known_ids: int = 100,
    big: bool = True,
    answer: bool = True,
    on_frames: Callable[[int], None] = lambda n: None,
) -> Tally:
    """``frames`` hostile frames from ``peers`` DEALER sockets at once (see the module)."""
    tally = Tally()
    share = [frames // peers + (i < frames % peers) for i in range(peers)]
    await asyncio.gather(
        *(
            _peer(i, address, share[i], seed, known_ids, big, answer, tally, on_frames)
            for i in range(peers)
        )
    )
    return tally


async def honest_work(
    client: AsyncClient,
    task: str,
    jobs: int,
    fuzzing: asyncio.Future[Any],
    numbered: bool = True,
    every: float = 0.05,
) -> list[int]:
    """Submit ``jobs`` jobs of ``task`` (given their number as argument if ``numbered``) on
    the valid queue a few at a time while ``fuzzing`` runs (the rest at once when it
    ends); wait for all. Their ids, in order."""
    ids: list[int] = []
    batch = 5
    while len(ids) < jobs:
        n = min(batch, jobs - len(ids)) if not fuzzing.done() else jobs - len(ids)
        numbers = range(len(ids), len(ids) + n)
        specs = [job_spec(task, [i] if numbered else [], queue=VALID_QUEUE) for i in numbers]
        ids += await client.submit_many(specs)
        if not fuzzing.done():
            await asyncio.wait([fuzzing], timeout=every)
    outcomes = await client.wait(ids, timeout=120)
    assert len(outcomes) == len(ids)
    return ids


def vm_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` figure in kB (VmRSS now, VmHWM the peak); -1 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def bad_frames_counted(metrics_port: int) -> float:
    """The gateway's ``bad_frames``, as the scheduler's /metrics publishes it (once a second)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^corral_bad_frames_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


async def bad_frames_settled(metrics_port: int, expected: int, timeout: float = 10.0) -> float:
    """The published count once it reaches ``expected`` (snapshots lag up to a second)."""
    deadline = time.monotonic() + timeout
    while (counted := bad_frames_counted(metrics_port)) < expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return counted


async def store_changes(
    client: AsyncClient, ids: list[int], task: str, numbered: bool = True
) -> dict[str, int]:
    """What the store shows beyond the honest jobs, each run once to success: jobs not
    among ``ids``, honest jobs moved (another token, attempt or queue) or with a result
    they did not return (their number if ``numbered``, else None), workflows."""
    status = await client.status()
    jobs = await client.jobs(limit=100_000)
    honest = set(ids)
    number = {job_id: i for i, job_id in enumerate(ids)}
    return {
        "foreign_jobs": sum(1 for j in jobs if j.job_id not in honest)
        + max(0, sum(status.jobs.values()) - len(jobs)),
        "moved_jobs": sum(
            1
            for j in jobs
            if j.job_id in honest
            and (j.status, j.token, j.attempts, j.queue, j.task)
            != ("SUCCEEDED", 1, 1, VALID_QUEUE, task)
        ),
        "wrong_results": sum(
            1
            for j in jobs
            if j.job_id in honest
            and wire.unpack(j.result) != (number[j.job_id] if numbered else None)
        ),
        "workflows": int(await client.workflow(1) is not None),
    }
