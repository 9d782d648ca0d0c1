"""A client given several scheduler addresses follows the leader: real ZeroMQ ROUTER sockets
in the test play the leader, a standby (NotLeader) or a scheduler that went silent; the
client is the real AsyncClient. A move is handled like a scheduler restart."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from actors.client import AsyncClient
from actors.errors import ConfigError, RequestLost, SchedulerUnreachable
from tests.helpers.fake_scheduler import FakeScheduler
from tests.helpers.procs import free_address
from tests.helpers.standby import standby
from transport import protocol as wire


def submitted(message: wire.Message) -> wire.Message | None:
    """A leader's answer to Submit: job ids from 7 on."""
    if isinstance(message, wire.Submit):
        return wire.Submitted(message.request_id, list(range(7, 7 + len(message.jobs))))
    return None


@pytest.fixture
def fakes() -> Iterator[tuple[FakeScheduler, FakeScheduler]]:
    a, b = FakeScheduler(free_address()), FakeScheduler(free_address())
    a.instance, b.instance = "a", "b"
    a.answer = b.answer = submitted
    yield a, b
    a.close()
    b.close()


@asynccontextmanager
async def serving(*fakes: FakeScheduler) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(f.serve()) for f in fakes]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def spec(key: str | None = None) -> wire.JobSpec:
    return wire.JobSpec("t", idempotency_key=key)


async def test_a_client_given_a_standby_first_submits_to_the_leader_it_names(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    _, leader = fakes
    with standby(leader.address) as fake:
        async with serving(leader), AsyncClient([fake.address, leader.address]) as client:
            assert client.address == leader.address
            assert await client.submit_many([spec()]) == [7]
    assert fake.count(wire.Submit) == 0


async def test_a_submission_a_standby_refused_is_sent_to_the_leader_it_names_even_without_keys(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, b = fakes
    async with serving(a, b), AsyncClient(f"{a.address},{b.address}") as client:
        a.standby = b.address  # A stepped down: NotLeader(request id, leader B) to all
        assert await client.submit_many([spec()]) == [7]
        assert client.address == b.address
    assert (a.count(wire.Submit), b.count(wire.Submit)) == (1, 1), "refused, then sent once"


async def test_a_move_away_from_a_silent_leader_is_a_restart_for_requests_in_flight(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, b = fakes
    # Moves after 2 s of silence (half the silence timeout), well before requests expire.
    async with serving(a, b), AsyncClient([a.address, b.address], silence_timeout=4.0) as client:
        a.silent = True  # it may have committed what it got: nobody can say
        keyless = asyncio.create_task(client.submit_many([spec()]))
        keyed = asyncio.create_task(client.submit_many([spec("once")]))
        lost = re.escape(f"the leader changed (this client now talks to {b.address})")
        with pytest.raises(RequestLost, match=lost):
            await keyless
        assert await keyed == [7], "an idempotency key makes sending it again safe"
    assert (a.count(wire.Submit), b.count(wire.Submit)) == (2, 1)


async def test_waits_are_registered_again_with_the_new_leader(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, b = fakes
    async with serving(a, b), AsyncClient([a.address, b.address], silence_timeout=1.0) as client:
        waiting = asyncio.create_task(client.wait([5], timeout=30))
        await a.until(wire.Wait)
        a.standby = ""  # stepped down; no leader known yet: the client tries B
        wait = await b.until(wire.Wait)
        assert wait.job_ids == [5]
        await b.send(wire.Outcomes(wait.request_id, [wire.JobOutcome(5, "SUCCEEDED")]))
        outcomes = await waiting
    assert outcomes[5].status == "SUCCEEDED"


async def test_no_scheduler_answering_is_unreachable_naming_every_address() -> None:
    dead = [free_address(), free_address()]
    with pytest.raises(SchedulerUnreachable, match=f"at {dead[0]} or {dead[1]} within 1.5s"):
        async with AsyncClient(dead, connect_timeout=1.5):
            pass


def test_a_bad_address_is_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="'ftp://x' is not allowed: a scheduler address"):
        AsyncClient("tcp://a:1, ftp://x")


async def test_frames_that_get_no_answer_do_not_make_a_live_leader_look_silent(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, b = fakes
    # Moves after 0.2 s of an unanswered probe; an events ack and an unsubscribe get no
    # answer at all, and an idle client probes nothing.
    async with serving(a, b), AsyncClient([a.address, b.address], silence_timeout=0.4) as client:
        stream = client.watch(5)
        reading = asyncio.create_task(anext(stream))
        subscribe = await a.until(wire.Subscribe)
        await a.send(wire.Events(subscribe.request_id, [wire.Event(1, 0.0, "job", 5)]))
        assert (await reading).job_id == 5
        await stream.aclose()  # sends the events ack's successor: Unsubscribe
        await a.until(wire.Unsubscribe)
        epoch = client.link.epoch
        with pytest.raises(TimeoutError):  # five times the move-after time, idle
            await asyncio.wait_for(b.until(wire.ClientHello), 1.0)
        assert (client.link.epoch, client.address) == (epoch, a.address)


async def test_a_scheduler_that_stands_down_and_leads_again_gets_the_refused_request(
    fakes: tuple[FakeScheduler, FakeScheduler],
) -> None:
    a, _ = fakes
    async with serving(a), AsyncClient(a.address) as client:
        a.standby = ""  # one address: it stands by, no leader known, then leads again
        submitting = asyncio.create_task(client.submit_many([spec()]))
        await a.until(wire.Submit)
        await a.until(wire.ClientHello, a.count(wire.ClientHello) + 1)  # asked again
        a.standby = None  # the same process leads again: the same instance
        assert await submitting == [7], "refused (nothing done), so sent again"
    assert a.count(wire.Submit) == 2


async def test_standbys_naming_no_leader_are_told_apart_from_nobody_answering() -> None:
    dead = free_address()
    with standby("") as fake, pytest.raises(SchedulerUnreachable) as caught:
        async with AsyncClient([fake.address, dead], connect_timeout=1.5):
            pass
    assert str(caught.value).startswith(
        f"no leader answered at {fake.address} or {dead} within 1.5s: {fake.address} "
        "answered as standby, naming no leader that answered"
    )
