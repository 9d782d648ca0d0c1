"""Scheduler address lists and the follower's policy (actors/addresses.py), with a fake
clock: which address a worker or client talks to next, and which leader it follows."""

from __future__ import annotations

import pytest

from actors.addresses import (
    ANSWER_WAIT_MAX_S,
    ANSWER_WAIT_MAX_SEVERAL_S,
    ANSWER_WAIT_S,
    SUSPECT_S,
    Follower,
    parse,
    spoken,
)
from actors.errors import ConfigError

A, B, C = "tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555", "tcp://10.0.0.3:5555"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_list_is_split_on_commas_stripped_and_each_address_kept_once() -> None:
    assert parse(f" {A}, {B},{A},") == (A, B)
    assert parse([A, B]) == (A, B)
    assert parse("ipc:///tmp/corral.sock") == ("ipc:///tmp/corral.sock",)
    assert parse("mem://x,inproc://y") == ("mem://x", "inproc://y")


@pytest.mark.parametrize(
    "bad",
    ["http://a:1", "tcp://a", "tcp://a:0", "tcp://a:70000", "tcp://:5555", "tcp://*:5555", "a:1"],
)
def test_an_address_no_worker_can_reach_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"{A},{bad}", "--connect")
    assert caught.value.value == bad
    assert str(caught.value).startswith(f"--connect: {bad!r} is not allowed: a scheduler address")


@pytest.mark.parametrize("empty", ["", " , ", []])
def test_no_address_at_all_is_refused(empty: str | list[str]) -> None:
    with pytest.raises(ConfigError):
        parse(empty)


def test_addresses_are_spoken_as_a_list() -> None:
    assert spoken([A]) == A
    assert spoken([A, B, C]) == f"{A}, {B} or {C}"


def test_next_goes_round_robin_and_one_address_stays_put() -> None:
    follower = Follower([A, B, C])
    assert [follower.next() for _ in range(4)] == [B, C, A, B]
    single = Follower([A])
    assert [single.next() for _ in range(3)] == [A, A, A]


def test_the_answer_wait_doubles_per_round_without_a_welcome_and_resets_on_one() -> None:
    follower = Follower([A, B])
    waits = []
    for _ in range(10):
        waits.append(follower.answer_wait())
        follower.next()
    assert waits[:4] == [ANSWER_WAIT_S, ANSWER_WAIT_S, 2 * ANSWER_WAIT_S, 2 * ANSWER_WAIT_S]
    assert max(waits) == ANSWER_WAIT_MAX_SEVERAL_S, "a round of the list stays short"
    follower.welcomed(term=3)
    assert follower.answer_wait() == ANSWER_WAIT_S
    single = Follower([A])
    single_waits = []
    for _ in range(6):
        single_waits.append(single.answer_wait())
        single.next()
    assert single_waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0], "one address: as before"
    assert ANSWER_WAIT_MAX_S == 8.0


def test_an_address_that_went_silent_is_skipped_for_a_while() -> None:
    clock = Clock()
    follower = Follower([A, B], clock)
    follower.suspect(A)
    follower.next()  # to B
    assert follower.next() == B, "A is suspected: ask B again rather than wait on A"
    clock.now += SUSPECT_S + 0.1
    assert follower.next() == A
    follower.suspect(A)
    follower.suspect(B)
    assert follower.next() == B, "all suspected: plain round robin"


def test_a_named_leader_is_followed_listed_or_not() -> None:
    follower = Follower([A, B])
    assert follower.leader_named(B, 1) == B
    assert follower.leader_named(C, 1) == C, "an unlisted leader is trusted"
    follower.follow(C)
    assert follower.current == C
    assert follower.next() == B, "round robin goes on from the last listed address"


def test_a_leader_that_is_no_help_is_not_followed() -> None:
    follower = Follower([A, B])
    assert follower.leader_named("", 2) is None, "an election is under way"
    assert follower.leader_named(A, 2) is None, "the standby named itself"
    assert follower.leader_named("http://x", 2) is None, "no transport reaches it"


def test_the_dead_leader_named_for_its_own_term_is_not_followed_a_new_term_is() -> None:
    follower = Follower([A, B])
    follower.welcomed(term=5)  # A led in term 5, then went silent
    follower.suspect(A)
    follower.next()
    assert follower.leader_named(A, 5) is None, "the standby still names the dead leader"
    assert follower.leader_named(A, 6) == A, "A won a new term: follow it"
