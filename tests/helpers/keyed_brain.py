"""A real scheduler (``Brain``: every actor) in this process, on the in-memory transport
with CURVE identities and on an SQLite file, restartable on the same file, its heartbeat
monitor on a ``VirtualClock`` (tests/actors/test_security_state_machine.py).

``KeySet`` writes a key folder as ``corral keygen`` does: the scheduler's pair, public keys
by role, and one key no role lists. ``KeyedBrain`` starts the brain, waits for it to go
quiet (``settle``), reads the store through the store actor's typed reads (no SQL here),
restarts it (a new process on the same file: memory lost, the file kept) and closes it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from unittest import mock

from actors.config import SchedulerConfig
from actors.keys import client_keys, keygen
from actors.scheduler import brain as brain_module
from actors.scheduler.brain import Brain
from actors.scheduler.job import Job
from actors.scheduler.messages import ReclaimOrphans
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import AttemptRecord, StoreBackend
from tests.helpers.virtual_time import VirtualClock, VirtualMonitor
from transport import ClientKeys

# A settle that needs more loop turns than this is not settling: the system is spinning.
MAX_SETTLE_ROUNDS = 500
# How long the actors may take to go idle. Counting loop turns alone was wrong: the store
# commits in its SQLite thread, and while a commit is in that thread the store's mailbox
# holds what came after it, however many times the loop turns. On a loaded machine (a full
# suite at -n 4 beside other work, load average 7-9) a commit outlasted 500 turns and the
# property test failed with "never went idle" in a case that passed when hypothesis ran it
# again (FlakyFailure). After MAX_SETTLE_ROUNDS turns each turn waits a millisecond, until
# the actors are idle or this bound passes.
QUIET_BOUND_S = 20.0
# Virtual seconds; in real time far longer than any test runs (see ``config``).
LEASE_S = 60.0
GRACE_S = 10.0


class KeySet:
    """Keys in ``root``: ``folder`` for ``--keys``; ``peers[label]``, a peer's own keys."""

    def __init__(self, root: Path, roles: dict[str, str], strangers: tuple[str, ...]) -> None:
        self.folder = root / "keys"
        secrets = root / "secrets"
        keygen("scheduler", self.folder)
        server = str(self.folder / "scheduler.key")
        self.peers: dict[str, ClientKeys] = {}
        self.public: dict[str, str] = {}
        for label, role in roles.items():
            public, _ = keygen(label, secrets)
            (self.folder / f"{role}s").mkdir(exist_ok=True)
            (self.folder / f"{role}s" / public.name).write_bytes(public.read_bytes())
        for label in (*roles, *strangers):
            if label in strangers:
                keygen(label, secrets)
            keys = client_keys(str(secrets / f"{label}.key_secret"), server)
            assert keys is not None
            self.peers[label] = keys
            self.public[label] = keys.public.decode("ascii")


def keyed_config(address: str, db: Path, keys: KeySet) -> SchedulerConfig:
    """A lease no test runs for in real time (the orphan reclaim's real timer never
    fires: ``time_passed`` does its work when the virtual clock says so); the monitor
    counts silences on the virtual clock; a retry backoff of a real millisecond."""
    return SchedulerConfig(
        bind=address,
        db=str(db),
        keys=str(keys.folder),
        lease=LEASE_S,
        lease_grace=GRACE_S,
        backoff_base=0.001,
        backoff_cap=0.001,
        durability="normal",
    )


class KeyedBrain:
    def __init__(self, config: SchedulerConfig, clock: VirtualClock) -> None:
        self.config = config
        self.clock = clock
        self.brain: Brain | None = None
        self.serving: asyncio.Task[None] | None = None
        self.started_at = 0.0  # by the virtual clock
        self.orphans_reclaimed = False
        self.starts = 0

    @property
    def running(self) -> Brain:
        assert self.brain is not None, "the scheduler is not running"
        return self.brain

    async def start(self) -> None:
        brain = Brain(self.config)
        monitor = functools.partial(VirtualMonitor, clock=self.clock)
        with mock.patch.object(brain_module, "HeartbeatMonitor", monitor):
            await brain.start()
        self.brain = brain
        self.serving = asyncio.create_task(brain.run(), name="keyed-brain")
        self.started_at = self.clock.now()
        self.orphans_reclaimed = False
        self.starts += 1

    async def stop(self) -> None:
        if self.brain is None:
            return
        self.brain.stop()
        assert self.serving is not None
        try:
            await self.serving  # raises what stopped it, if not our request
        finally:
            await self.brain.close()
            self.brain = self.serving = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def check_alive(self) -> None:
        """Raise what stopped the scheduler (an actor crashed, the store refused a batch)."""
        if self.serving is not None and self.serving.done():
            self.serving.result()
            raise AssertionError("the scheduler stopped by itself")

    def time_passed(self) -> None:
        """What the scheduler's own timer does lease + grace after a start (by the virtual
        clock: its real ``call_later`` may come later still, and then finds nothing)."""
        config = self.config
        due = self.started_at + config.lease + config.lease_grace
        if not self.orphans_reclaimed and self.clock.now() >= due:
            self.orphans_reclaimed = True
            self.running.scheduler.tell(ReclaimOrphans())

    # ------------------------------------------------------------------ quiet

    def _idle(self) -> bool:
        return all(actor.mailbox.empty() for actor in self.running.system.actors)

    async def _quiet(self) -> None:
        calm = turns = 0
        deadline = time.monotonic() + QUIET_BOUND_S
        while turns < MAX_SETTLE_ROUNDS or time.monotonic() < deadline:
            await asyncio.sleep(0 if turns < MAX_SETTLE_ROUNDS else 0.001)
            turns += 1
            calm = calm + 1 if self._idle() else 0
            if calm >= 3:
                return
        raise AssertionError(f"the scheduler's actors never went idle in {QUIET_BOUND_S} s")

    async def settle(self) -> None:
        """Until every actor is idle, no commit is in flight, and no retry is due within
        a few milliseconds (retries wait for real time: the backoff is a millisecond)."""
        brain = self.running
        for _ in range(MAX_SETTLE_ROUNDS):
            self.check_alive()
            await self._quiet()
            commits = brain.store.commits
            await read(brain.store, StoreBackend.jobs, ())  # after every write told so far
            await self._quiet()
            due = brain.table.next_retry_at()
            if due is not None and due < time.time() + 0.05:
                await asyncio.sleep(max(0.0, due - time.time()) + 0.002)
                continue
            if brain.store.commits == commits and self._idle():
                return
        raise AssertionError("the scheduler never settled")

    # ------------------------------------------------------------------ reads

    async def jobs(self, ids: list[int]) -> dict[int, Job]:
        found = await read(self.running.store, StoreBackend.jobs, ids)
        return {job.id: job for job in found}

    async def attempts(self, job_id: int) -> list[AttemptRecord]:
        return await read(self.running.store, StoreBackend.attempts, job_id)
