"""The scheduler process: recovers state from the store, wires the actors together (see
``routes``), runs them.

Start-up order matters for the contract: the store is opened (and locked)
first, every live job is loaded, and only then does the gateway start accepting
frames. Jobs that were RUNNING when the previous process died are not handed
out again at once: a worker still running one may reconnect and keep it
(its lease and token are still valid), and what nobody claims within lease +
grace is reclaimed and later leased under a new, larger token, so a late result
from the old holder is refused.

Start-up either completes or undoes itself: any failure (the database, the
address, the metrics port) closes what was opened and raises one CorralError,
so the process exits with one line instead of hanging on a live thread or port.
The start line and the INFO log say how many live jobs were recovered and when
the last commit was, so a database that lost commits (a damaged WAL) shows.

On PostgreSQL with standbys a Brain is one term of a leader (``actors.scheduler.node``
runs the terms): it serves on the address the process bound (and leaves it open when it
stops), fences every commit with its term, and is deposed (``depose``) the moment the term
is lost: nothing is committed from then on, and its actors stop.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Any

import strategies
from actors.config import SchedulerConfig, is_loopback, is_postgres, redact_dsn
from actors.errors import StoreError
from actors.keys import scheduler_keys
from actors.lifecycle import JobState
from actors.runtime import Actor, ActorSystem, gc_paused, in_slices
from actors.scheduler import limits, quotas, routes, submissions
from actors.scheduler.dag import DagResolver
from actors.scheduler.dispatcher import Dispatcher
from actors.scheduler.effects import Effects
from actors.scheduler.events import EventHub
from actors.scheduler.gateway import Gateway
from actors.scheduler.heartbeat import HeartbeatMonitor
from actors.scheduler.jobs import Job, JobTable
from actors.scheduler.messages import RunningKeyed, Write
from actors.scheduler.ops import Ops
from actors.scheduler.remote import RemoteActor
from actors.scheduler.routes import Actors
from actors.scheduler.scheduler import Scheduler
from actors.scheduler.store.actor import StoreActor
from actors.scheduler.store.base import StoreBackend
from actors.scheduler.store.sqlite import SqliteStore
from actors.scheduler.strategy import StrategyActor
from transport import ServerKeys, ServerTransport, bind
from transport import protocol as wire

log = logging.getLogger("corral.brain")


class Brain:
    """All scheduler-side actors in one process, supervised together."""

    def __init__(
        self,
        config: SchedulerConfig,
        backend: StoreBackend | None = None,
        *,
        transport: ServerTransport | None = None,
        term: int = 0,
        name: str = "",
        cluster: Callable[[], wire.ClusterView | None] | None = None,
    ) -> None:
        """``backend`` replaces the database named by ``config.db`` (tests pass a
        ``MemoryStore``). A leader's term (``actors.scheduler.node``) passes the
        ``transport`` the process bound (left open at the end), its ``term`` (its commits
        are fenced with it), the scheduler's ``name`` and what the status says of the
        ``cluster``."""
        self.config = config
        self.system = ActorSystem()
        self.transport = transport
        self.own_transport = transport is None
        self.term = term
        self.cluster = cluster
        self.deposed: StoreError | None = None
        self.own_backend = backend is None
        self.backend = backend or store_for(config, term, name)
        self.store = StoreActor(self.backend)
        self.table = JobTable(config)
        self.scheduler = Scheduler(self.table)
        self.instance = uuid.uuid4().hex
        self.recovered: dict[str, int] = {}
        self.database_id = ""  # the store's identity, read at start-up
        self.last_commit: float | None = None  # wall-clock time, None for a new database
        self._running = False  # the actors run, and close their own resources on stop

    @property
    def running(self) -> bool:
        """Started, and serving until it stops (the dashboard asks only then)."""
        return self._running

    @property
    def address(self) -> str:
        assert self.transport is not None
        return self.transport.address

    async def start(self) -> None:
        strategy = strategies.create(  # fails fast on a bad name or weight
            self.config.strategy, self.config.weights(), aging=self.config.priority_aging
        )
        keys = scheduler_keys(self.config.keys)  # ConfigError before the database is opened
        await self.store.open()  # raises StoreError and closes itself on failure
        try:
            with gc_paused():  # the live jobs are loaded, to stay: see gc_paused
                await self._start(strategy, keys)
            log.info("%s", self.summary())
        except BaseException:
            # Anything that fails once the actors run stops them too: a start-up failure
            # exits, never leaves the database's thread keeping the process alive.
            await self.close()
            raise

    async def _start(self, strategy: Any, keys: ServerKeys | None) -> None:
        await self._load()
        config = self.config
        if self.transport is None:
            self.transport = bind(config.bind, keys)
        dag: Actor
        if config.dag_resolver:  # the DAG resolver runs in its own process
            dag = RemoteActor("dag", config.dag_resolver)
            dag.reply_to = self.scheduler
        else:
            dag = DagResolver()
        actors = Actors(
            store=self.store,
            scheduler=self.scheduler,
            dag=dag,
            strategy=StrategyActor(strategy),
            dispatcher=Dispatcher(
                strategy.name,
                config.heartbeat_interval,
                self.instance,
                config.lease,
                config.lease_grace,
                self.term,
            ),
            heartbeat=HeartbeatMonitor(config),
            events=EventHub(),
            gateway=Gateway(
                self.transport,
                config.heartbeat_interval,
                self.instance,
                self.term,
                owns_transport=self.own_transport,
            ),
        )
        routes.connect(actors)
        identity = self.transport.identity
        actors.dispatcher.identity = self.scheduler.identity = identity
        actors.events.subject = lambda peer: quotas.subject(identity(peer), peer)
        actors.events.max_per_subject = config.max_subscriptions
        actors.gateway.role_of = keys.current_role if keys is not None else None
        self.scheduler.security = security_of(config)
        for edge in (actors.dispatcher, actors.gateway):
            edge.database_id = self.database_id
            edge.database = (
                self.database() if is_postgres(config.db) else f"SQLite file {config.db}"
            )
        if self.cluster is not None:
            self.scheduler.cluster = self.cluster
        for actor in actors.all():
            self.system.add(actor)
        await self._recover(dag)
        self._running = True
        await self.system.start()

    def summary(self) -> str:
        """The start line: address, database, strategy, what was recovered, last commit."""
        live = sum(self.recovered.values())
        if self.last_commit is None:
            recovered = "new database"
        else:
            at = datetime.datetime.fromtimestamp(self.last_commit, datetime.UTC)
            states = ", ".join(f"{n} {s.lower()}" for s, n in self.recovered.items() if n)
            recovered = (
                f"recovered {live} live job(s){f' ({states})' if states else ''}, "
                f"last commit {at:%Y-%m-%d %H:%M:%S} UTC"
            )
        db = self.database()
        led = f"leader, term {self.term}; " if self.term else ""
        return (
            f"corral scheduler on {self.config.advertise or self.address} (db {db}, strategy "
            f"{self.config.strategy}, durability {self.config.durability}; {led}{recovered})"
        )

    def database(self) -> str:
        """How the start line, and every Welcome, name the database (no password)."""
        return redact_dsn(self.config.db) if self.own_backend else self.backend.where

    async def _load(self) -> None:
        recovered = await self.backend.recover()
        self.table.load((), recovered.counts, recovered.max_job_id)
        # A new leader's whole backlog, while the same loop renews its term: in slices.
        async for part in in_slices(recovered.live):
            self.table.admit(part)
        self.recovered = {s: recovered.counts.get(s, 0) for s in ("PENDING", "QUEUED", "RUNNING")}
        # The newest time any job records: what a lost WAL would have taken with it.
        self.last_commit = recovered.last_write
        self.database_id = recovered.database_id
        self.table.next_workflow_id = recovered.max_workflow_id + 1
        self._limits = await self.backend.limits()
        # Due fire times fire, per each schedule's missed policy, when its timer first runs.
        self.scheduler.schedules.load(await self.backend.schedules())
        # Finished parents of live jobs: their states decide the children's fate, and
        # their results go to the children's handlers.
        self._settled_parents: dict[int, Job] = {}
        for parent in recovered.parents:
            parent.settled = True
            self._settled_parents[parent.id] = parent

    async def _recover(self, dag: Actor) -> None:
        """Re-queue and re-track what the previous process left live. Jobs it left RUNNING
        stay RUNNING: their workers may claim them back, and the scheduler reclaims the
        rest once lease + grace has passed (see Scheduler.on_start)."""
        table, ops, effects = self.table, Ops(), Effects()
        # Before any ready job: the rate limits' buckets as last committed, and the slots
        # of each concurrency key its RUNNING jobs hold (counted from the database).
        strategy = self.scheduler.strategy
        strategy.tell(limits.recovered(self.scheduler, self._limits))
        keyed = [
            (j.id, j.concurrency_key, j.max_concurrent, j.id)
            for j in table.jobs.values()
            if j.status is JobState.RUNNING and j.concurrency_key
        ]
        if keyed:
            strategy.tell(RunningKeyed(keyed))
        async for part in in_slices(list(table.jobs.values())):
            for job in part:
                if job.status is JobState.PENDING and table.may_wait_on_parents(job):
                    self._recover_waiting(job, dag, ops, effects)
                    continue
                if job.depends_on and all(p in self._settled_parents for p in job.depends_on):
                    # QUEUED, RUNNING (reclaimed later) or waiting to retry: its parents
                    # all succeeded, and their results go with each new attempt.
                    job.parent_results = [
                        self._settled_parents[p].parent_result() for p in job.depends_on
                    ]
                if job.status is JobState.QUEUED:
                    effects.ready.append(job)
        if len(ops) or effects.ready or effects.finished:
            self.store.tell(Write(ops.seal(), self.scheduler, effects))

    def _recover_waiting(self, job: Job, dag: Actor, ops: Ops, effects: Effects) -> None:
        parents = {
            **self._settled_parents,
            **{p: self.table.jobs[p] for p in job.depends_on if p in self.table.jobs},
        }
        submissions.place_new(self.scheduler, job, parents, ops, effects)

    async def run(self) -> None:
        """Serve until stopped; raises ActorCrashed if an actor died."""
        await self.system.run()

    def stop(self) -> None:
        self.system.request_stop()

    def depose(self, why: StoreError) -> None:
        """The term is lost: commit nothing from now on (the store refuses every batch
        with ``why``) and stop the actors (``run`` raises ``why``). Safe at any time, also
        while ``start`` is still loading."""
        self.deposed = why
        self.store.failed = why
        self.system.fail(why)

    async def close(self) -> None:
        """Release everything, whether start() finished or not (idempotent)."""
        if self._running:
            await self.system.stop()
        else:
            if self.transport is not None and self.own_transport:
                await self.transport.close()
            await self.store.on_stop()

    async def __aenter__(self) -> Brain:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def security_of(config: SchedulerConfig) -> str:
    """What the status says of who may talk to this scheduler (``StatusView.security``)."""
    if config.keys:
        return "keys"
    return "" if is_loopback(config.bind) else "insecure"


def store_for(config: SchedulerConfig, term: int = 0, name: str = "") -> StoreBackend:
    """The backend ``--db`` names: PostgreSQL for a postgresql:// DSN (its commits fenced
    with ``term`` when one is given), else an SQLite file."""
    if is_postgres(config.db):
        from actors.scheduler.store.postgres import PostgresStore  # asyncpg only when used

        return PostgresStore(config.db, name=name, term=term or None)
    return SqliteStore(config.db, config.durability)
