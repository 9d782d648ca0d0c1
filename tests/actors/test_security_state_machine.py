"""Issue 16's stateful property: whatever keyed peers do, in any order, across scheduler
restarts, no key holds or commits work it was not granted, and no acknowledged job is lost.

The real scheduler (``Brain``: gateway, scheduler, dispatcher, heartbeat monitor, DAG
resolver, strategy, store actor) runs in this process on the in-memory transport with
CURVE identities, on an SQLite file that a restart reopens, its heartbeat monitor on a
virtual clock the rules move. Its peers are models that speak the protocol frame by frame
(``tests.helpers.model_peers``): worker keys A, B and C (C an impostor when it forges), an
admin key, a client key, and a stranger whose key no role lists. Rules: submit, hello,
heartbeat, report, forged results (a wrong token, a job leased to another key), forged
hellos (another worker's name, claims of others' leases), forged heartbeats, time
passing, a worker hung or killed and coming back, a scheduler restart, garbage frames.

After every step, read back through the store actor's typed reads:

1. at most one peer holds a valid lease on a job (valid: granted and not stopped, and
   unexpired by that peer's own clock, as a self-fencing worker counts it), under the
   job's newest token, and the store has that lease, recorded under that peer's key;
2. every committed result (a success's bytes, a failure's error text name their sender)
   came from the key the lease was granted to, under that token;
3. every job whose submission was acknowledged is in the store;
4. a stranger never hears anything, and frames that must change nothing change nothing.

A failure prints the run's steps unshrunk (shrinking takes minutes here). To shrink one,
run the machine with ``settings(SETTINGS, phases=list(Phase))`` outside the suite's
timeout, e.g. ``pytest -p no:timeout`` after changing ``SETTINGS`` locally.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend
from tests.helpers.keyed_brain import KeyedBrain, KeySet, keyed_config
from tests.helpers.lease_ledger import LeaseLedger
from tests.helpers.model_peers import TASK, ModelPeer, Sent
from tests.helpers.virtual_time import VirtualClock
from transport import protocol as wire
from transport.errors import BadFrame

T = TypeVar("T")

ROLES = {"A": "worker", "B": "worker", "C": "worker", "admin": "admin", "client": "client"}
STRANGER = "stranger"
PEERS = (*ROLES, STRANGER)
WORKING = ("A", "B", "C", "admin")  # keys allowed to act as workers (admin: everything)
# Virtual seconds a step may let pass: well within a lease (60 s), past it but within its
# grace (dead, not yet expired), past lease + grace (expired, its leases reclaimed).
STEPS_OF_TIME = (1.0, 30.0, 55.0, 65.0, 75.0)
HONEST_AT_START = ("A", "B")  # connected workers from the start: leases from the first submit
# A restart is one rule among many; more than two per run leave too few steps for leases
# to be granted and results committed between them.
MAX_RESTARTS = 2
# Frames that must change nothing, whatever their contents.
INERT_SENDERS = ("client", STRANGER)

_machines = itertools.count()

SETTINGS = settings(
    max_examples=70,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,  # the same sequences on every run: CI is reproducible
    database=None,
    # No shrinking here: it may take minutes (each step runs the real actors), past the
    # test's timeout, and a failing run of at most 50 steps prints readably as it is. (How to
    # shrink one: the module docstring.)
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)


class SecurityMachine(RuleBasedStateMachine):
    def __init__(self, root: Path, keys: KeySet) -> None:
        super().__init__()
        n = next(_machines)
        address = f"mem://security-machine-{n}"
        self.loop = asyncio.new_event_loop()
        self.clock = VirtualClock()
        self.keys = keys
        self.sched = KeyedBrain(keyed_config(address, root / f"m{n}.db", keys), self.clock)
        self.sent: list[Sent] = []  # every result a peer sent, honest or forged
        self.ledger = LeaseLedger(keys.public, self.clock)
        self.peers = {
            label: ModelPeer(
                label, keys.peers[label], address, self.clock, self.ledger.granted, self.sent.append
            )
            for label in PEERS
        }
        self.ledger.peers = self.peers
        self.acked: set[int] = set()  # jobs whose submission was acknowledged
        self.requests = itertools.count(1)
        try:
            self._run(self._open())
        except BaseException:
            self.teardown()  # hypothesis tears down only what it finished building
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _open(self) -> None:
        await self.sched.start()
        for peer in self.peers.values():
            peer.connect()
        for label in HONEST_AT_START:
            self.peers[label].hello()
        await self._sync()

    def teardown(self) -> None:
        try:
            self._run(self._close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _close(self) -> None:
        try:
            for peer in self.peers.values():
                await peer.close()
        finally:
            await self.sched.stop()  # the store's thread must not outlive the test

    # ----------------------------------------------------------- the model

    async def _sync(self) -> None:
        """Let the scheduler settle, then every peer read what it was sent (which may make
        it send more, as a worker answers ``hello_first`` with a hello), until quiet."""
        for _ in range(50):
            await self.sched.settle()
            before = sum(p.frames_sent for p in self.peers.values())
            for peer in self.peers.values():
                peer.process()
            client = self.peers["client"]
            for reply in client.replies:
                if isinstance(reply, wire.Submitted):
                    self.acked.update(reply.job_ids)
            client.replies.clear()
            if sum(p.frames_sent for p in self.peers.values()) == before:
                break
        else:
            raise AssertionError("the peers and the scheduler never went quiet")
        if self.ledger.violations:
            raise AssertionError("\n".join(self.ledger.violations))

    def _step(self) -> None:
        self._run(self._sync())

    async def _snapshot(self) -> list[tuple[Any, ...]]:
        jobs = await read(self.sched.running.store, StoreBackend.list_jobs, limit=100_000)
        return sorted(
            (j.id, j.status, j.token, j.worker, j.attempts, bytes(j.result or b"")) for j in jobs
        )

    def _inert(self, sender: str, send: Any) -> None:
        """Send; and if the sender may change nothing, check that it changed nothing."""
        if sender not in INERT_SENDERS:
            send()
            self._step()
            return
        before = self._run(self._snapshot())
        send()
        self._step()
        assert self._run(self._snapshot()) == before, f"frames from {sender} changed the store"

    # ----------------------------------------------------------- rules
    # Each rule is drawn only when it can act (its precondition), on a peer drawn from
    # those it can act on: a run spends its steps on moves, not on no-ops.

    def _working(self, can: Any) -> list[str]:
        return [w for w in WORKING if can(self.peers[w])]

    def _pick(self, data: st.DataObject, can: Any) -> ModelPeer:
        return self.peers[data.draw(st.sampled_from(self._working(can)))]

    @rule(n=st.integers(1, 3))
    def submit(self, n: int) -> None:
        client = self.peers["client"]
        client.send(wire.ClientHello(wire.PROTOCOL_VERSION))
        jobs = [wire.JobSpec(TASK, max_retries=2) for _ in range(n)]
        client.send(wire.Submit(next(self.requests), jobs))
        self._step()

    @precondition(lambda self: self.acked)
    @rule(pick=st.integers(0, 63))
    def cancel(self, pick: int) -> None:
        job_id = sorted(self.acked)[pick % len(self.acked)]
        client = self.peers["client"]
        client.send(wire.ClientHello(wire.PROTOCOL_VERSION))
        client.send(wire.CancelJobs(next(self.requests), [job_id]))
        self._step()

    @precondition(lambda self: self._working(_alive))
    @rule(data=st.data())
    def hello(self, data: st.DataObject) -> None:
        self._pick(data, _alive).hello()
        self._step()

    @precondition(lambda self: self._working(_alive))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        self._pick(data, _alive).heartbeat()
        self._step()

    @precondition(lambda self: self._working(_holding))
    @rule(data=st.data(), pick=st.integers(0, 7), ok=st.booleans())
    def report(self, data: st.DataObject, pick: int, ok: bool) -> None:
        peer = self._pick(data, _holding)
        peer.fence()  # what lapsed is reported as such; the rest is ours to report
        job_id = sorted(peer.held)[pick % len(peer.held)]
        peer.report(job_id, peer.held[job_id].token, ok)
        self._step()

    @rule(
        sender=st.sampled_from(PEERS),
        pick=st.integers(0, 63),
        delta=st.sampled_from((0, 0, -1, 1)),
        ok=st.booleans(),
    )
    def forge_result(self, sender: str, pick: int, delta: int, ok: bool) -> None:
        """A result for a lease the sender does not hold: another key's, a stale one, a
        token never granted."""
        peer = self.peers[sender]
        job_id, token = self.ledger.lease(pick)
        token = max(0, token + delta)
        held = peer.held.get(job_id)
        if not peer.alive or (held is not None and held.token == token):
            return  # silent, or its own lease: not a forgery
        self._inert(sender, lambda: peer.report(job_id, token, ok, "forged", forged=True))

    @rule(
        sender=st.sampled_from(("C", "admin", "client", STRANGER)),
        name=st.sampled_from(("A", "B", "C")),
        picks=st.lists(st.integers(0, 63), max_size=3),
        report=st.booleans(),
    )
    def forge_hello(self, sender: str, name: str, picks: list[int], report: bool) -> None:
        """A hello under another worker's name, claiming leases of other keys (and, as
        in the issue's attack after a restart, reporting results for them at once)."""
        peer = self.peers[sender]
        if not peer.alive:
            return
        claims = [self.ledger.lease(p) for p in picks]

        def send() -> None:
            peer.hello(name, claims)
            for job_id, token in claims if report else ():
                held = peer.held.get(job_id)
                if held is None or held.token != token:
                    peer.report(job_id, token, True, "forged", forged=True)

        self._inert(sender, send)

    @rule(sender=st.sampled_from(PEERS), picks=st.lists(st.integers(0, 63), max_size=2))
    def forge_heartbeat(self, sender: str, picks: list[int]) -> None:
        """A heartbeat listing leases of other keys besides its own."""
        peer = self.peers[sender]
        if peer.alive:
            claims = [self.ledger.lease(p) for p in picks]
            self._inert(sender, lambda: peer.heartbeat(claims))

    @rule(
        sender=st.sampled_from(PEERS),
        frame=st.binary(max_size=48)
        | st.tuples(st.integers(1, 40), st.integers(0, 255)).map(
            lambda cut: (
                wire.encode(wire.Heartbeat([(cut[0], 1)], 1.0, 1))[: cut[0] % 9] + bytes([cut[1]])
            )
        ),
    )
    def garbage(self, sender: str, frame: bytes) -> None:
        peer = self.peers[sender]
        try:
            wire.decode_request(frame)
            return  # a frame that decodes is not garbage
        except BadFrame:
            pass
        if peer.alive:
            before = self._run(self._snapshot())
            peer.send_raw(frame)
            self._step()
            assert self._run(self._snapshot()) == before, "a garbage frame changed the store"

    @rule(dt=st.sampled_from(STEPS_OF_TIME))
    def pass_time(self, dt: float) -> None:
        self.clock.advance(dt)
        for peer in self.peers.values():
            if peer.alive:
                peer.fence()  # the agent's fence loop runs on its own
        self.sched.time_passed()
        self._step()

    @precondition(lambda self: self._working(_alive))
    @rule(data=st.data())
    def hang(self, data: st.DataObject) -> None:
        """The worker's process stops (paused, swapped out): it reads and sends nothing."""
        self._pick(data, _alive).frozen = True

    @precondition(lambda self: self._working(_hung))
    @rule(data=st.data())
    def wake(self, data: st.DataObject) -> None:
        peer = self._pick(data, _hung)
        peer.frozen = False
        peer.fence()
        self._step()

    @precondition(lambda self: self._working(_connected))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker's process dies: its connection is gone, with every job it ran."""
        self._run(self._pick(data, _connected).close())
        self._step()

    @precondition(lambda self: self._working(_gone))
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        """A new process of a crashed worker: same key and name, holding nothing."""
        self._run(self._rejoin(self._pick(data, _gone)))
        self._step()

    async def _rejoin(self, peer: ModelPeer) -> None:
        peer.connect()  # its reader is a task on the loop
        peer.hello(peer.label)

    @precondition(lambda self: self.sched.starts <= MAX_RESTARTS)
    @rule()
    def restart(self) -> None:
        """A new scheduler process on the same file (no time passes: within the leases,
        so workers claim their jobs back in the hello their next frame's refusal prompts)."""
        self._run(self.sched.restart())
        self._step()

    # ----------------------------------------------------------- invariants

    @invariant()
    def contract(self) -> None:
        store = self.sched.running.store
        self._run(self.ledger.check(store, self.acked, self.peers[STRANGER]))


def _alive(peer: ModelPeer) -> bool:
    return peer.alive


def _holding(peer: ModelPeer) -> bool:
    return peer.alive and any(peer.valid(j) for j in peer.held)


def _hung(peer: ModelPeer) -> bool:
    return peer.conn is not None and peer.frozen


def _connected(peer: ModelPeer) -> bool:
    return peer.conn is not None


def _gone(peer: ModelPeer) -> bool:
    return peer.conn is None


@pytest.mark.slow
def test_no_key_holds_or_commits_work_it_was_not_granted_and_no_job_is_lost(
    tmp_path: Path,
) -> None:
    keys = KeySet(tmp_path, ROLES, (STRANGER,))

    class Machine(SecurityMachine):
        def __init__(self) -> None:
            super().__init__(tmp_path, keys)

    run_state_machine_as_test(Machine, settings=SETTINGS)
