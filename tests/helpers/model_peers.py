"""Peers of a scheduler driven frame by frame by a test: each speaks the wire protocol
itself on the in-memory transport, under its own CURVE key (or none the scheduler knows),
and keeps the state an honest worker keeps (``actors.worker``): the leases it was sent,
until when each is valid by its own clock, the last Assign read, its results not yet
acknowledged. The test decides when it says hello, beats, reports, forges or falls
silent; what it receives is applied the way the worker agent applies it.

A peer reports every lease granted to it to ``on_grant`` the moment it reads the Assign,
so the test can check at that instant that nobody else still holds the job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from tests.helpers.virtual_time import VirtualClock
from transport import ClientKeys
from transport import protocol as wire
from transport.errors import BadFrame
from transport.memory import MemoryClient

SLOTS = 2
TASK = "t"


@dataclass
class Held:
    token: int
    basis: float  # the Assign's lease basis


@dataclass
class Sent:
    """A result a peer sent: the model's record of who vouched for what."""

    label: str
    job_id: int
    token: int
    ok: bool
    forged: bool


def result_of(label: str, job_id: int, token: int, ok: bool, note: str = "") -> wire.JobResult:
    """A result whose committed bytes (or error text) name the peer that sent it."""
    if ok:
        return wire.JobResult(job_id, token, True, wire.pack([label, job_id, token]))
    return wire.JobResult(job_id, token, False, error=f"model:{label}:{job_id}:{token}:{note}")


def sender_of(raw: msgspec.Raw | None) -> tuple[str, int, int] | None:
    """(label, job id, token) that a committed result carries."""
    if raw is None:
        return None
    label, job_id, token = wire.unpack(raw)
    return str(label), int(job_id), int(token)


def sender_of_error(error: str | None) -> tuple[str, int, int] | None:
    if not error or not error.startswith("model:"):
        return None
    _, label, job_id, token, _ = error.split(":", 4)
    return label, int(job_id), int(token)


@dataclass
class ModelPeer:
    label: str
    keys: ClientKeys | None
    address: str
    clock: VirtualClock
    on_grant: Callable[[ModelPeer, wire.Assignment, bool], None]
    on_sent: Callable[[Sent], None]
    name: str = ""  # the worker name of its last hello
    conn: MemoryClient | None = None
    reader: asyncio.Task[None] | None = None
    inbox: list[wire.FromScheduler] = field(default_factory=list)
    received: int = 0  # frames ever received
    frozen: bool = False  # a hung process: reads and sends nothing until woken
    # Worker state (actors.worker.leases, outbox).
    welcomed: bool = False
    instance: str = ""
    lease: float = 5.0
    renewed_at: float = 0.0
    hello_at: float = 0.0
    assign_seq: int = 0
    database_id: str = ""
    held: dict[int, Held] = field(default_factory=dict)
    unacked: dict[int, wire.JobResult] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)  # ErrorReply codes
    replies: list[wire.FromScheduler] = field(default_factory=list)  # to client requests
    frames_sent: int = 0

    def __post_init__(self) -> None:
        self.name = self.name or self.label

    # ------------------------------------------------------------- connection

    def connect(self) -> None:
        """A new connection (a new process): nothing held, nothing read yet."""
        self.conn = MemoryClient(self.address, self.keys)
        self.reader = asyncio.create_task(self._read(self.conn), name=f"peer-{self.label}")
        self.welcomed, self.instance, self.assign_seq = False, "", 0
        self.renewed_at = self.hello_at = 0.0
        self.held.clear()
        self.unacked.clear()
        self.inbox.clear()
        self.frozen = False

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.conn is not None:
            await self.conn.close()
        self.conn = self.reader = None

    async def _read(self, conn: MemoryClient) -> None:
        while True:
            for frame in await conn.recv_batch():
                self.received += 1
                try:
                    self.inbox.append(wire.decode_reply(frame))
                except BadFrame as exc:
                    raise AssertionError(f"{self.label} got an unreadable frame: {exc}") from None

    @property
    def alive(self) -> bool:
        return self.conn is not None and not self.frozen

    def send(self, message: wire.Message) -> None:
        self.send_raw(wire.encode(message))

    def send_raw(self, frame: bytes) -> None:
        assert self.conn is not None
        self.frames_sent += 1
        self.conn.send(frame)

    # --------------------------------------------------------- worker: leases

    def expiry(self, job_id: int) -> float:
        return max(self.held[job_id].basis, self.renewed_at) + self.lease

    def valid(self, job_id: int) -> bool:
        return job_id in self.held and self.clock.now() <= self.expiry(job_id)

    def fence(self) -> None:
        """Stop every lease lapsed by our clock, and report it failed (as the agent does)."""
        for job_id in [j for j in self.held if not self.valid(j)]:
            self._stopped(job_id, "self-fenced")

    def _stopped(self, job_id: int, why: str) -> None:
        held = self.held.pop(job_id)
        self.report(job_id, held.token, ok=False, note=why)

    def report(
        self, job_id: int, token: int, ok: bool, note: str = "", forged: bool = False
    ) -> None:
        result = result_of(self.label, job_id, token, ok, note)
        if not forged:
            self.held.pop(job_id, None)
            self.unacked[job_id] = result
        self.on_sent(Sent(self.label, job_id, token, ok, forged))
        self.send(wire.Results([result]))

    def claims(self) -> list[tuple[int, int]]:
        return [(j, h.token) for j, h in self.held.items()] + [
            (r.job_id, r.token) for r in self.unacked.values()
        ]

    def hello(self, name: str | None = None, extra: list[tuple[int, int]] = ()) -> None:  # type: ignore[assignment]
        """An honest hello claiming what we hold (plus ``extra`` claims, forged)."""
        self.fence()
        self.name = name or self.name
        self.hello_at = self.clock.now()
        claims = self.claims() + [c for c in extra if c not in self.claims()]
        hello = wire.WorkerHello(
            wire.PROTOCOL_VERSION, self.name, SLOTS, ["default"], [TASK], claims,
            self.hello_at, 0, self.database_id,
        )  # fmt: skip
        self.send(hello)

    def heartbeat(self, extra: list[tuple[int, int]] = ()) -> None:  # type: ignore[assignment]
        self.fence()
        listed = [(j, h.token) for j, h in self.held.items()]
        listed += [c for c in extra if c not in listed][: max(0, SLOTS - len(listed))]
        self.send(wire.Heartbeat(listed, self.clock.now(), self.assign_seq))

    # ------------------------------------------------------------- inbound

    def process(self) -> None:
        """Apply every frame received, in order, as the worker agent does."""
        if self.frozen:
            return
        frames, self.inbox = self.inbox, []
        for message in frames:
            self._apply(message)

    def _apply(self, message: wire.FromScheduler) -> None:
        match message:
            case wire.Assign():
                self._assign(message)
            case wire.HeartbeatAck(sent_at=sent_at):
                self.renewed_at = max(self.renewed_at, sent_at)
            case wire.ResultsAck(job_ids=acked, refused=refused):
                for job_id in (*acked, *refused):
                    self.unacked.pop(job_id, None)
            case wire.StopJob(job_id=job_id, token=token):
                held = self.held.get(job_id)
                if held is not None and held.token == token:
                    self._stopped(job_id, "stopped")
            case wire.Welcome(lease=lease, instance=instance, database_id=database_id):
                self.lease, self.database_id = lease, database_id
                if instance != self.instance:
                    self.instance, self.assign_seq = instance, 0
                if not self.welcomed and self.hello_at:  # a new episode: our hello is acked
                    self.welcomed = True
                    self.renewed_at = max(self.renewed_at, self.hello_at)
                    for result in list(self.unacked.values()):
                        self.send(wire.Results([result]))
                    self.heartbeat()
            case wire.ErrorReply(code="hello_first"):
                if self.welcomed and self.hello_at:  # the agent says hello again at once
                    self.welcomed = False
                    self.hello()
            case wire.ErrorReply(code=code, message=text):
                self.refused.append((code, text))
            case _:
                self.replies.append(message)

    def _assign(self, message: wire.Assign) -> None:
        self.fence()
        if message.seq and message.seq <= self.assign_seq:
            return
        self.assign_seq = message.seq
        late = self.clock.now() > max(message.lease_basis, self.renewed_at) + self.lease
        for a in message.assignments:
            fresh = not late and a.job_id not in self.held
            self.on_grant(self, a, fresh)
            if fresh:
                self.held[a.job_id] = Held(a.token, message.lease_basis)
