"""The worker's lease bookkeeping on its own (no sockets): when a held lease lapses, which
Assign frames count, and that a self-fencing episode is logged once."""

from __future__ import annotations

import logging
import time

import msgspec
import pytest

from actors.worker.leases import Leases
from transport import protocol as wire

RAW = msgspec.Raw(b"\x90")


def assignment(job_id: int, token: int = 1) -> wire.Assignment:
    return wire.Assignment(job_id, token, "t", RAW, RAW, 1)


def test_a_lease_runs_from_the_newer_of_its_basis_and_the_last_renewal() -> None:
    leases = Leases()
    leases.welcome(5.0, "a")
    leases.take(assignment(1), lease_basis=100.0)
    assert leases.expiry(1) == 105.0
    leases.renewed(200.0)
    assert leases.expiry(1) == 205.0
    leases.renewed(150.0)  # an older acknowledgement moves nothing back
    assert leases.expiry(1) == 205.0
    assert leases.listed() == [(1, 1)]
    leases.forget(1)
    assert leases.listed() == []


def test_an_assign_frame_counts_once_and_a_new_scheduler_numbers_anew() -> None:
    leases = Leases()
    leases.welcome(5.0, "a")
    frame = wire.Assign([assignment(1)], seq=7, lease_basis=0.0)
    assert leases.first_reading(frame)
    assert not leases.first_reading(frame)
    assert not leases.first_reading(wire.Assign([], seq=6, lease_basis=0.0))
    assert leases.first_reading(wire.Assign([], seq=0, lease_basis=0.0))  # unnumbered
    leases.welcome(5.0, "b")
    assert leases.assign_seq == 0
    assert leases.first_reading(wire.Assign([], seq=1, lease_basis=0.0))


def test_lapsed_leases_are_listed_until_stopped_and_the_episode_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leases = Leases()
    leases.welcome(1.0, "a")
    long_ago = time.monotonic() - 10.0
    leases.take(assignment(1), long_ago)
    leases.take(assignment(2), time.monotonic() + 60.0)
    assert leases.lapsed_for(long_ago) > 0
    with caplog.at_level(logging.ERROR, logger="corral.worker"):
        assert leases.lapsed(stopping=()) == [1]
        assert leases.lapsed(stopping=()) == [1]
        assert leases.lapsed(stopping={1}) == []
    assert len([r for r in caplog.records if "self-fencing" in r.message]) == 1
    assert 0 < leases.next_lapse(stopping={1}) <= 61.0
    leases.renewed(time.monotonic())  # acknowledged again: the episode ends
    assert leases.fencing_since is None
    assert leases.lapsed(stopping=()) == []
