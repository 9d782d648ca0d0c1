"""Chaos with several schedulers on one PostgreSQL database (issue 15): the leader is
SIGKILLed every few seconds while the worker faults of ``bench.chaos`` go on.

``Schedulers`` starts N ``corral scheduler`` processes on the database, each on an address
of its own; workers and the load-generating client are given the whole list (``address``,
comma-separated) and follow whichever leads. ``LeaderKiller`` finds the leader (a hello
answered Welcome with a term; a standby answers NotLeader), SIGKILLs it while at least
UNDER_LOAD jobs wait (otherwise it spares it, and counts that), waits until another
scheduler welcomes a client with a larger term, then starts the killed one again on its
address, where it stands by.

Each takeover is measured from the SIGKILL to (a) the first Welcome with a larger term (a
hello every 20 ms, timed when the hello that found it was sent) and (b) the first job
started after that, from the ledger the task keeps outside corral. A start between the kill
and (a) is not counted: no scheduler could assign then, so it came from an assignment of
the dead leader still on its way. Both are accurate to about one poll (the new leader may
have served a little before the hello that found it). The issue's bound on (b): under 3 s
median, never over 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from actors import AsyncClient
from actors.errors import CorralError
from bench.chaos import read_ledger
from bench.harness import Cluster, free_address, wait_for_port
from transport import connect
from transport import protocol as wire
from transport.errors import TransportError

# The bounds on a takeover (leader SIGKILLed until jobs start again).
MEDIAN_BOUND_S = 3.0
HARD_BOUND_S = 5.0
# How often the killer asks for the new leader while a takeover is under way.
POLL_S = 0.02
# A takeover not over after this long is recorded as failed (the run goes on).
GIVE_UP_S = 30.0
# The leader is killed under load only: while at least this many jobs wait (QUEUED), so
# there is work to start again at once when a new leader leads. In the tail of a run the
# slots hold the last (long) jobs, and the first start after a kill would time those.
UNDER_LOAD = 100


class Schedulers(Cluster):
    """``n`` schedulers on the PostgreSQL database ``db``, each on a free address."""

    def __init__(
        self,
        scheduler_args: tuple[str, ...],
        db: str,
        n: int,
        directory: Path | None = None,
        prefetch: int = 0,
    ) -> None:
        super().__init__(scheduler_args, directory, db, prefetch=prefetch)
        self.addresses = [free_address() for _ in range(n)]
        self.address = ",".join(self.addresses)  # what workers and clients are given
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start_scheduler(self) -> None:
        """Start every scheduler (once each listens); returns once one of them leads."""
        for address in self.addresses:
            self.start_at(address)
        found = asyncio.run(leading(self.addresses))
        if found is None:
            raise RuntimeError(f"no scheduler led within {GIVE_UP_S:g} s; see {self.dir}")
        self.lead_first(found[0])

    def lead_first(self, leader: str) -> None:
        """List ``leader`` first in what workers and the load generator are given from now
        on: every address leads them to it, but this saves a hop."""
        self.address = ",".join([leader, *(a for a in self.addresses if a != leader)])

    def start_at(self, address: str) -> None:
        """A scheduler process on ``address``, once it listens."""
        proc = self.spawn_at(address)
        wait_for_port(address, proc, log=self.log_of(address))

    def spawn_at(self, address: str) -> subprocess.Popen[bytes]:
        """A scheduler process on ``address`` (again, after a kill: it stands by), not
        waited for; from the main thread (``bench.children``)."""
        i = self.addresses.index(address)
        proc = self._spawn(
            f"scheduler-{i}", "scheduler", "--bind", address, "--db", self.db,
            *self.scheduler_args,
        )  # fmt: skip
        self.processes[address] = proc
        return proc

    def log_of(self, address: str) -> Path:
        return self.dir / f"scheduler-{self.addresses.index(address)}.log"

    def stop(self) -> None:
        self.stop_workers()
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.reap()


async def hello(address: str, timeout: float = 0.5) -> wire.Welcome | wire.NotLeader | None:
    """A client's hello to ``address``: Welcome (it leads), NotLeader (it stands by), or
    None if nothing answered in time."""
    link = connect(address)
    try:
        link.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames = await asyncio.wait_for(link.recv_batch(), left)
            except TimeoutError:
                return None
            for frame in frames:
                with contextlib.suppress(TransportError):
                    reply = wire.decode_reply(frame)
                    if isinstance(reply, wire.Welcome | wire.NotLeader):
                        return reply
        return None
    finally:
        await link.close()


async def leading(addresses: list[str], above: int = 0) -> tuple[str, int, float] | None:
    """The first of ``addresses`` to welcome a client with a term above ``above``: its
    address, its term, and the wall-clock time the hello that found it was sent; None if
    none did within GIVE_UP_S."""
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        for address in addresses:
            sent = time.time()
            reply = await hello(address)
            if isinstance(reply, wire.Welcome) and reply.term > above:
                return address, reply.term, sent
        await asyncio.sleep(POLL_S)
    return None


@dataclass
class Takeover:
    """One SIGKILL of the leader: when (wall clock), and how long until a scheduler led
    with a larger term and until a job started (None: it did not happen)."""

    killed: float
    term: int
    queued: int
    leading: float | None = None
    started: float | None = None


async def _queued(address: str) -> int:
    """How many jobs wait at the leader at ``address`` (0 if it does not answer)."""
    try:
        async with AsyncClient(address, connect_timeout=2, request_timeout=5) as client:
            return (await client.status()).jobs.get("QUEUED", 0)
    except CorralError:
        return 0


def _figures(values: list[float]) -> str:
    if not values:
        return "none measured"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"


@dataclass
class LeaderReport:
    takeovers: list[Takeover] = field(default_factory=list)
    spared: int = 0  # kills skipped: fewer than UNDER_LOAD jobs waited

    @property
    def leading(self) -> list[float]:
        return [t.leading for t in self.takeovers if t.leading is not None]

    @property
    def started(self) -> list[float]:
        return [t.started for t in self.takeovers if t.started is not None]

    @property
    def ok(self) -> bool:
        """Every kill was taken over, and jobs started again within the issue's bounds."""
        started = self.started
        return (
            all(t.leading is not None for t in self.takeovers)
            and (not started or statistics.median(started) < MEDIAN_BOUND_S)
            and all(s < HARD_BOUND_S for s in started)
        )

    def measure_starts(self, starts: list[float]) -> None:
        """Fill in (b) from the wall-clock times of every job start in the ledger."""
        starts = sorted(starts)
        for takeover in self.takeovers:
            if takeover.leading is None:
                continue
            led_at = takeover.killed + takeover.leading
            later = [s for s in starts if s >= led_at]
            if later:
                takeover.started = later[0] - takeover.killed

    def figures(self) -> dict[str, object]:
        """For --json: the kills, and p50/max of both takeover figures (seconds)."""

        def p50_max(values: list[float]) -> dict[str, float | None]:
            if not values:
                return {"p50": None, "max": None}
            return {"p50": statistics.median(values), "max": max(values)}

        return {
            "leader_kills": len(self.takeovers),
            "leader_kills_spared": self.spared,
            "takeover_leading_s": p50_max(self.leading),
            "takeover_started_s": p50_max(self.started),
            "takeovers": [[t.queued, t.leading, t.started] for t in self.takeovers],
            "takeovers_ok": self.ok,
        }

    def lines(self) -> list[str]:
        missing = sum(1 for t in self.takeovers if t.leading is None)
        unstarted = sum(1 for t in self.takeovers if t.leading is not None and t.started is None)
        return [
            f"leaders SIGKILLed: {len(self.takeovers)}"
            + (f" ({missing} NOT taken over within {GIVE_UP_S:g} s)" if missing else "")
            + f"; {self.spared} spared (fewer than {UNDER_LOAD} jobs waiting)",
            f"takeover, SIGKILL -> a scheduler welcomes with a larger term: "
            f"{_figures(self.leading)}",
            f"takeover, SIGKILL -> first job started: {_figures(self.started)}"
            + (f" ({unstarted} kill(s) with no job left to start)" if unstarted else ""),
            f"jobs start again within {MEDIAN_BOUND_S:g} s median, never over "
            f"{HARD_BOUND_S:g} s: {'yes' if self.ok else 'NO'}",
        ]


class LeaderKiller:
    """SIGKILLs the leader of ``cluster`` every ``every`` seconds, and restarts it."""

    def __init__(self, cluster: Schedulers, every: float) -> None:
        self.cluster = cluster
        self.every = every
        self.report = LeaderReport()

    async def run_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.every)
            if not done.is_set():
                await self.kill_leader()

    async def kill_leader(self) -> None:
        found = await leading(self.cluster.addresses)
        if found is None:
            return  # nobody leads: the last takeover is already recorded as failed
        address, term, _ = found
        queued = await _queued(address)
        if queued < UNDER_LOAD:
            self.report.spared += 1
            return
        victim = self.cluster.processes[address]
        victim.send_signal(signal.SIGKILL)
        takeover = Takeover(time.time(), term, queued)
        self.report.takeovers.append(takeover)
        await asyncio.to_thread(victim.wait)
        others = [a for a in self.cluster.addresses if a != address]
        successor = await leading(others, above=term)
        if successor is not None:
            takeover.leading = successor[2] - takeover.killed
            self.cluster.lead_first(successor[0])
        # Started after the takeover, it stands by (the term is held elsewhere). Waited
        # for in a thread: waiting for it to listen must not hold back the worker faults'
        # timers; started here, so it dies with this process (bench.children).
        restarted = self.cluster.spawn_at(address)
        log = self.cluster.log_of(address)
        await asyncio.to_thread(wait_for_port, address, restarted, log=log)

    def measure(self) -> LeaderReport:
        """The takeovers, with (b) from the ledger; after the run."""
        starts = [at for kind, _, _, at, _, _ in read_ledger(self.cluster) if kind == "start"]
        self.report.measure_starts(starts)
        return self.report
