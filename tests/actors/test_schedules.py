"""Schedules in the scheduler (issue 17), in-process on the in-memory store: the missed
policies as pure decisions, then a scheduler started over a store whose schedules are
overdue (what a restart or a new leader finds), firing each fire time once, per policy,
with its job and its advance in one commit; no-overlap; pause, resume and remove;
refusals that change nothing; the keys reserved for fire times; who may do what."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import pytest

from actors.client import AsyncClient, job_spec
from actors.config import SchedulerConfig
from actors.errors import RequestRefused
from actors.firetimes import spec_bytes
from actors.lifecycle import JobState
from actors.scheduler import roles
from actors.scheduler.brain import Brain
from actors.scheduler.job import Job
from actors.scheduler.ops import Ops
from actors.scheduler.schedule_book import MAX_CATCH_UP, Schedule
from actors.scheduler.store.memory import MemoryStore
from tests.helpers.waiting import until
from transport import Identity
from transport import protocol as wire

_n = itertools.count()


def spec(name: str, **fields: Any) -> wire.ScheduleSpec:
    fields.setdefault("job", job_spec("t", [name]))
    return wire.ScheduleSpec(name, **fields)


def schedule(missed: str, every: int = 10, next_fire: float = 100.0) -> Schedule:
    s = Schedule(spec("s", every=every, missed=missed), "", 0.0, next_fire)
    return s


@pytest.mark.parametrize(
    ("missed", "now", "runs", "skipped"),
    [
        ("latest", 99.0, [], 0),
        ("latest", 100.2, [100.0], 0),
        ("latest", 135.0, [130.0], 3),
        ("all", 135.0, [100.0, 110.0, 120.0, 130.0], 0),
        ("skip", 100.2, [100.0], 0),  # on time: fired by its timer, a little late
        ("skip", 130.9, [130.0], 3),  # the newest is still on time
        ("skip", 135.0, [], 4),  # every due fire time was missed
    ],
)
def test_the_missed_policies_choose_the_fire_times_to_run(
    missed: str, now: float, runs: list[float], skipped: int
) -> None:
    assert schedule(missed).plan(now) == (runs, skipped)


def test_all_runs_at_most_the_latest_hundred_and_counts_the_rest() -> None:
    runs, skipped = schedule("all", every=1, next_fire=1.0).plan(1000.0)
    assert runs == [float(t) for t in range(1000 - MAX_CATCH_UP + 1, 1001)]
    assert skipped == 1000 - MAX_CATCH_UP


def test_a_paused_schedule_plans_nothing() -> None:
    paused = schedule("all")
    paused.paused = True
    assert paused.plan(1e9) == ([], 0)


# ---------------------------------------------------------------- in a scheduler


def config() -> SchedulerConfig:
    return SchedulerConfig(bind=f"mem://schedules-{next(_n)}", db="unused.db")


def stored(name: str, created_at: float, next_fire: float, **fields: Any) -> tuple[str, Any]:
    """An overdue schedule's row, as a scheduler killed long ago left it."""
    state = {k: fields.pop(k) for k in ("last_job", "skipped", "paused") if k in fields}
    row = (
        name,
        spec_bytes(spec(name, **fields)),
        "",
        created_at,
        next_fire,
        None,
        state.get("last_job"),
        state.get("skipped", 0),
        state.get("paused", False),
    )
    return name, row


def fire_keys(store: MemoryStore) -> list[str]:
    return sorted(j.idempotency_key or "" for j in store.rows.values() if j.idempotency_key)


async def test_overdue_schedules_fire_per_policy_once_and_not_again_after_a_restart() -> None:
    """Each fired 4 times a minute apart while nothing ran; the newest was 30 s ago."""
    t0 = math.floor(time.time()) - 270.0  # created then: fire times t0+60 ... t0+240 passed
    store = MemoryStore()
    await store.open()
    await store.commit(
        Ops(
            schedules=[
                stored(name, t0, t0 + 60, every=60, missed=name)
                for name in ("latest", "all", "skip")
            ]
        )
    )
    for _restart in range(2):
        async with Brain(config(), store) as brain, AsyncClient(brain.address) as client:
            await until(lambda: _all_advanced(store, t0 + 300))
            views = {v.name: v for v in await client.schedules()}
        assert fire_keys(store) == sorted(
            [
                f"schedule:latest:{int(t0 + 240)}",
                *(f"schedule:all:{int(t0 + 60 * k)}" for k in (1, 2, 3, 4)),
            ]
        ), "latest: the newest once; all: each; skip: none"
        assert {n: (v.skipped, v.next_fire) for n, v in views.items()} == {
            "latest": (3, t0 + 300),
            "all": (0, t0 + 300),
            "skip": (4, t0 + 300),
        }
        assert views["all"].last_fire == t0 + 240
        assert views["all"].last_job_state == "QUEUED"
        assert views["skip"].last_job_id is None


async def _all_advanced(store: MemoryStore, next_fire: float) -> bool:
    return all(r.next_fire == next_fire for r in store.schedule_rows.values())


def _job(job_id: int, status: JobState) -> Job:
    return Job(job_id, "t", b"\x90", b"\x80", 0, "q", (), 0, 1.0, status)


async def test_no_overlap_skips_and_counts_a_fire_time_while_the_last_job_is_live() -> None:
    t0 = math.floor(time.time()) - 90.0
    store = MemoryStore()
    await store.open()
    rows = [
        stored("busy", t0, t0 + 60, every=60, no_overlap=True, last_job=1),
        stored("free", t0, t0 + 60, every=60, no_overlap=True, last_job=2),
    ]
    await store.commit(Ops(inserts=[_job(1, JobState.QUEUED), _job(2, JobState.SUCCEEDED)]))
    await store.commit(Ops(schedules=rows))
    async with Brain(config(), store) as brain, AsyncClient(brain.address) as client:
        await until(lambda: _all_advanced(store, t0 + 120))
        views = {v.name: v for v in await client.schedules()}
    assert fire_keys(store) == [f"schedule:free:{int(t0 + 60)}"]
    assert (views["busy"].skipped, views["busy"].last_job_id) == (1, 1)
    assert (views["free"].skipped, views["free"].last_job_state) == (0, "QUEUED")


async def test_pause_resume_and_remove_change_what_fires_and_what_is_stored() -> None:
    store = MemoryStore()
    async with Brain(config(), store) as brain, AsyncClient(brain.address) as client:
        added = await client.add_schedule("hourly", "t", [1], cron="0 * * * *", tz="Europe/Berlin")
        assert (added.spec, added.tz, added.paused, added.last_fire) == (
            "cron 0 * * * *",
            "Europe/Berlin",
            False,
            None,
        )
        assert added.next_fire is not None
        assert added.next_fire > time.time()
        again = await client.add_schedule("hourly", "t", [1], cron="0 * * * *", tz="Europe/Berlin")
        assert again == added, "the same schedule again changes nothing"
        with pytest.raises(RequestRefused, match="exists with another spec"):
            await client.add_schedule("hourly", "t", [2], cron="0 * * * *")
        paused = await client.pause_schedule("hourly")
        assert (paused.paused, paused.next_fire) == (True, None)
        assert store.schedule_rows["hourly"].paused
        resumed = await client.resume_schedule("hourly")
        assert (resumed.paused, resumed.next_fire) == (False, added.next_fire)
        removed = await client.remove_schedule("hourly")
        assert removed.name == "hourly"
        assert await client.schedules() == []
        assert store.schedule_rows == {}
        with pytest.raises(RequestRefused, match="no schedule named 'hourly'"):
            await client.resume_schedule("hourly")


async def test_bad_schedules_are_refused_by_the_scheduler_and_change_nothing() -> None:
    store = MemoryStore()
    async with Brain(config(), store) as brain, AsyncClient(brain.address) as client:
        for bad, says in (
            (spec("x", cron="61 * * * *"), "bad minute"),
            (spec("x", cron="* * * * *", tz="Nowhere/City"), "unknown time zone"),
            (spec("x", every=5, job=job_spec("t", idempotency_key="k")), "idempotency key"),
        ):
            # A frame built by hand, past the SDK's own checks: the scheduler checks again.
            with pytest.raises(RequestRefused, match=says):
                await client._request(lambda rid, bad=bad: wire.AddSchedule(rid, bad))
        with pytest.raises(RequestRefused, match="unknown time zone 'Nowhere/City'"):
            await client.add_schedule("x", "t", cron="* * * * *", tz="Nowhere/City")
        with pytest.raises(RequestRefused, match="reserved for schedules"):
            await client.submit("t", idempotency_key="schedule:x:1")
        assert await client.schedules() == []
    assert store.schedule_rows == {}
    assert store.rows == {}


def test_adding_pausing_and_removing_need_an_admin_key_and_a_client_may_list() -> None:
    add = wire.AddSchedule(1, spec("x", every=5))
    change = wire.ChangeSchedule(1, "x", "pause")
    listing = wire.ListSchedules(1)
    client, admin = Identity("client", "c" * 40), Identity("admin", "a" * 40)
    assert roles.refusal(client, add) == "a client key may not send AddSchedule"
    assert roles.refusal(client, change) == "a client key may not send ChangeSchedule"
    assert roles.refusal(client, listing) is None
    assert roles.refusal(admin, add) is None
    assert roles.refusal(admin, change) is None
    assert roles.refusal(Identity("worker", "w" * 40), listing) is not None


def test_no_overlap_takes_a_cancelled_job_whose_handler_may_still_run_as_running() -> None:
    """Cancelled while RUNNING, its stop not yet confirmed by its worker (``JobTable.
    stopping``): the next fire time waits as it would for a live job."""
    from types import SimpleNamespace

    from actors.scheduler.jobs import JobTable
    from actors.scheduler.schedules import _running

    table = JobTable(SchedulerConfig())
    sched: Any = SimpleNamespace(table=table)
    schedule: Any = SimpleNamespace(last_job=7)
    table.jobs[7] = _job(7, JobState.CANCELLED)
    assert not _running(sched, schedule)
    table.stopping[7] = False
    assert _running(sched, schedule)
    table.stopped([7])
    assert not _running(sched, schedule)
    assert not _running(sched, SimpleNamespace(last_job=None))
