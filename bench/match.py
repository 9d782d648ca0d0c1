"""``python -m bench.match``: what the strategy actor's matching costs per assignment.

No processes and no sockets: the strategy actor alone, fed the messages the scheduler and
the dispatcher send it (``WorkerCredit(s)``, ``Enqueue``), matching once per message as the
runtime does (``on_idle``); the ``Picked`` it proposes go to a sink. Each row connects N
workers (8 slots each) in one of two layouts:

- ``other``: 4 workers serve queue ``main``, the N - 4 others serve queue ``other`` and sit
  idle with every slot free (issue 12.13: they must cost nothing while jobs flow on
  ``main``);
- ``one``: all N workers serve ``main``.

and drives two patterns, after one warm-up round (the first match meets every worker once):

- ``trickle``: one job arrives, is matched, its worker gives the slot back, again and again
  (an idle system: free slots everywhere, one job at a time);
- ``backlog``: 5,000 jobs more than twice the free slots wait; every round gives back the
  slots of the last round's picks in one ``WorkerCredits`` and enqueues as many new jobs
  (a loaded system).

With ``--stuck``, a job for a task no worker has waits in ``main`` all along (issue
13.13: it must not block the others, nor make each match visit every idle worker).

It prints µs of CPU per assignment (``time.process_time``), each pattern run for
``--seconds`` (default 1) or 20,000 assignments, whichever comes first (always at least one
round, however slow). It only uses the messages, so the same script measures older code.

``python -m bench.match [--seconds S] [--sizes 10,100,1000,10000] [--strategies a,b] [--stuck]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import strategies
from actors.scheduler.messages import Enqueue, Picked, ReadyJob, WorkerCredit, WorkerCredits
from actors.scheduler.strategy import StrategyActor

SLOTS = 8
MAIN_WORKERS = 4  # the "other" layout's workers on the busy queue
BACKLOG = 5_000  # plus twice the slots of all workers, so jobs always wait
MAX_ASSIGNMENTS = 20_000
TASKS = frozenset({"noop"})


class Sink:
    """Stands in for the scheduler: keeps the proposed picks."""

    def __init__(self) -> None:
        self.picks: list[tuple[int, bytes]] = []

    def tell(self, message: Any) -> None:
        assert isinstance(message, Picked)
        self.picks += message.picks


class Bench:
    def __init__(self, strategy: str, workers: int, layout: str, stuck: bool) -> None:
        self.actor = StrategyActor(strategies.create(strategy))
        self.sink = Sink()
        self.actor.scheduler = self.sink  # type: ignore[assignment]
        self.next_id = 0
        self.layout = (workers, layout)
        self.queues: dict[bytes, tuple[str, ...]] = {}
        self.stuck = stuck

    async def send(self, message: Any) -> None:
        await self.actor.handle(message)
        self.actor.on_idle()

    def jobs(self, n: int) -> Enqueue:
        first = self.next_id + 1
        self.next_id += n
        now = time.monotonic()
        ids = range(first, first + n)
        return Enqueue([ReadyJob(i, 0, "main", i, now, task="noop") for i in ids])

    async def connect(self) -> None:
        n, layout = self.layout
        for i in range(n):
            queue = "main" if layout == "one" or i < MAIN_WORKERS else "other"
            peer = f"w{i}".encode()
            self.queues[peer] = (queue,)
            await self.send(WorkerCredit(peer, peer.decode(), (queue,), SLOTS, SLOTS, TASKS))
        if self.stuck:
            await self.send(Enqueue([ReadyJob(0, 0, "main", 0, time.monotonic(), task="etl")]))
            self.take_picks()

    def take_picks(self) -> list[tuple[int, bytes]]:
        picks, self.sink.picks = self.sink.picks, []
        return picks

    async def give_back(self, picks: list[tuple[int, bytes]]) -> None:
        """The dispatcher's turn: the slots these jobs took are free again, one message."""
        per_peer = Counter(peer for _, peer in picks)
        grants = [
            WorkerCredit(p, p.decode(), self.queues[p], SLOTS, c, TASKS)
            for p, c in per_peer.items()
        ]
        await self.send(WorkerCredits(grants))

    async def run(self, seconds: float, backlog: bool) -> float:
        """Rounds of (give back the last round's slots, enqueue); CPU µs per assignment."""
        if backlog:
            await self.send(self.jobs(BACKLOG + 2 * SLOTS * self.layout[0]))
        picks = self.take_picks()
        assigned, spent, rounds = 0, 0.0, 0
        while assigned < MAX_ASSIGNMENTS and (spent < seconds or not assigned):
            started = time.process_time()
            if picks:
                await self.give_back(picks)
            await self.send(self.jobs(len(picks) if backlog else 1))
            picks = self.take_picks()
            elapsed = time.process_time() - started
            rounds += 1
            if rounds > 1:  # the first round meets every worker once: not the steady state
                assigned += len(picks)
                spent += elapsed
        return spent * 1e6 / max(1, assigned)


async def measure(
    strategy: str, workers: int, layout: str, seconds: float, stuck: bool
) -> tuple[float, float]:
    figures = []
    for backlog in (False, True):
        bench = Bench(strategy, workers, layout, stuck)
        await bench.connect()
        figures.append(await bench.run(seconds, backlog))
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.match", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--strategies", default="priority,round-robin")
    parser.add_argument("--stuck", action="store_true", help="a job no worker can run waits")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"CPU µs per assignment ({SLOTS} slots per worker)")
    header = f"{'strategy':<12} {'workers':>8} {'layout':<6} {'trickle':>12} {'backlog':>12}"
    print(header)
    print("-" * len(header))
    for strategy in args.strategies.split(","):
        for n in sizes:
            for layout in ("other", "one"):
                trickle_us, backlog_us = asyncio.run(
                    measure(strategy, n, layout, args.seconds, args.stuck)
                )
                print(
                    f"{strategy:<12} {n:>8} {layout:<6} {trickle_us:>12,.1f} {backlog_us:>12,.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
