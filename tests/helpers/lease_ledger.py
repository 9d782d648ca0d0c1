"""What the scheduler granted, as its peers read it, and the security contract checked
against the store (tests/actors/test_security_state_machine.py).

``LeaseLedger.granted`` is called the moment a model peer (``tests.helpers.model_peers``)
reads an Assign: a lease (job, token) belongs to the one key it was sent to, and no other
peer may still hold a valid lease on that job then. ``LeaseLedger.check`` reads every job
(and its attempts) through the store actor's typed reads and checks that at most one peer
holds a valid lease per job, the newest, and that the store has it under that peer's key;
that every committed result, success or failure, came from the key its lease was granted
to, under that token; that every acknowledged job is there; that a stranger heard nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from actors.lifecycle import PENDING, QUEUED, RUNNING, SUCCEEDED
from actors.runtime import Actor
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend
from tests.helpers.model_peers import ModelPeer, sender_of, sender_of_error
from tests.helpers.virtual_time import VirtualClock
from transport import protocol as wire


class LeaseLedger:
    def __init__(self, public: dict[str, str], clock: VirtualClock) -> None:
        self.public = public  # each peer's public key, by label
        self.clock = clock
        self.peers: dict[str, ModelPeer] = {}
        self.grants: dict[tuple[int, int], str] = {}  # (job, token) -> the key's label
        self.newest: dict[int, int] = {}  # job -> the newest token granted
        self.violations: list[str] = []  # found while peers read frames; raised after

    def lease(self, pick: int) -> tuple[int, int]:
        """One of the leases ever granted (job 1, token 1 before any); an even ``pick``
        one that a peer holds now, if any: a forgery of a live lease is the one that would
        do harm if it were accepted."""
        live = sorted(
            (job_id, held.token)
            for peer in self.peers.values()
            if peer.conn is not None
            for job_id, held in peer.held.items()
            if peer.valid(job_id)
        )
        leases = live if live and pick % 2 == 0 else sorted(self.grants)
        return leases[pick // 2 % len(leases)] if leases else (1, 1)

    def granted(self, peer: ModelPeer, a: wire.Assignment, fresh: bool) -> None:
        """A peer read an Assign: a lease (job, token) is granted to one key only; and as
        it starts, no one else may still hold the job."""
        key = (a.job_id, a.token)
        earlier = self.grants.get(key)
        if earlier is not None and earlier != peer.label:
            self.violations.append(
                f"job {a.job_id} token {a.token} granted to {earlier} and {peer.label}"
            )
        if earlier is None:
            # (Not checked here that tokens grow: a hung peer reads an old Assign late, so
            # the order peers read grants in is not the order they were made in.)
            self.newest[a.job_id] = max(a.token, self.newest.get(a.job_id, 0))
            self.grants[key] = peer.label
        if not fresh:
            return
        for other in self.peers.values():
            if other is not peer and other.conn is not None and other.valid(a.job_id):
                held = other.held[a.job_id]
                self.violations.append(
                    f"job {a.job_id} granted to {peer.label} under token {a.token} while "
                    f"{other.label} holds token {held.token} until {other.expiry(a.job_id)} "
                    f"(now {self.clock.now()})"
                )

    async def check(self, store: Actor, acked: set[int], stranger: ModelPeer) -> None:
        jobs = {j.id: j for j in await read(store, StoreBackend.list_jobs, limit=100_000)}
        lost = acked - jobs.keys()
        assert not lost, f"acknowledged jobs missing from the store: {sorted(lost)}"
        assert stranger.received == 0, "a key no role lists heard from the scheduler"
        holders: defaultdict[int, list[ModelPeer]] = defaultdict(list)
        for peer in self.peers.values():
            if peer.conn is not None:
                for job_id in peer.held:
                    if peer.valid(job_id):
                        holders[job_id].append(peer)
        for job_id, peers in holders.items():
            names = [p.label for p in peers]
            assert len(peers) == 1, f"job {job_id} has valid leases at {names}"
            self._held_as_stored(peers[0], job_id, jobs.get(job_id))
        for job in jobs.values():
            if job.status is RUNNING and (job.id, job.token) in self.grants:
                self._recorded_under_its_key(job.id, job.token, job.worker)
            if job.status is SUCCEEDED:
                committed = sender_of(job.result)
                assert committed is not None
                self._from_the_holder("result", job.id, job.token, committed, job.worker)
            if job.attempts:
                for attempt in await read(store, StoreBackend.attempts, job.id):
                    failed = sender_of_error(attempt.error)
                    if failed is not None:
                        self._from_the_holder("failure", job.id, attempt.token, failed, None)

    def _held_as_stored(self, peer: ModelPeer, job_id: int, job: Any) -> None:
        token = peer.held[job_id].token
        assert job is not None, f"{peer.label} holds job {job_id}, which the store lacks"
        assert token == self.newest[job_id], (
            f"{peer.label} holds job {job_id} under token {token}, not the newest "
            f"({self.newest[job_id]})"
        )
        where = (
            f"{peer.label} holds job {job_id} token {token}; the store has {job.status} "
            f"token {job.token} worker {job.worker}"
        )
        # Ended meanwhile (cancelled) is no second holder: the StopJob may not have reached
        # it (it hangs, or it has not reconnected since a restart), and its result will be
        # refused. What must not be is a job that can be leased again while it is held.
        assert job.status not in (PENDING, QUEUED), where
        if job.status is RUNNING:
            assert job.token == token, where
            self._recorded_under_its_key(job_id, token, job.worker)

    def _recorded_under_its_key(self, job_id: int, token: int, worker: str | None) -> None:
        holder = self.grants[(job_id, token)]
        key = self.public[holder]
        assert worker is not None, f"job {job_id} token {token} is recorded under no worker"
        assert worker.endswith(f"@{key}"), (
            f"job {job_id} token {token}, granted to {holder}, is recorded under worker "
            f"{worker!r}, not under {holder}'s key {key}"
        )

    def _from_the_holder(
        self, what: str, job_id: int, token: int, sender: tuple[str, int, int], worker: Any
    ) -> None:
        label, sent_job, sent_token = sender
        holder = self.grants.get((job_id, token))
        assert (sent_job, sent_token) == (job_id, token), (
            f"job {job_id} token {token} committed the {what} {label} sent for job "
            f"{sent_job} token {sent_token}"
        )
        assert label == holder, (
            f"job {job_id}: the {what} {label} sent under token {token} was committed; "
            f"the lease was granted to {holder}"
        )
        if worker is not None:
            self._recorded_under_its_key(job_id, token, worker)
