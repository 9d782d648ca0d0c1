"""Every pair of states: the transition table's verdict is enforced in one place."""

from __future__ import annotations

import itertools

import pytest

from actors.errors import IllegalTransition
from actors.lifecycle import TERMINAL, TRANSITIONS, JobState, check_transition

ALLOWED = {
    ("PENDING", "QUEUED"),
    ("PENDING", "CANCELLED"),
    ("PENDING", "UPSTREAM_FAILED"),
    ("PENDING", "FAILED"),  # parents' results too large to send with it
    ("QUEUED", "RUNNING"),
    ("QUEUED", "CANCELLED"),
    ("RUNNING", "SUCCEEDED"),
    ("RUNNING", "PENDING"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "CANCELLED"),
    ("RUNNING", "QUEUED"),
    ("FAILED", "QUEUED"),
    ("UPSTREAM_FAILED", "PENDING"),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(JobState, JobState)))
def test_each_pair_of_states_is_allowed_exactly_when_the_table_says_so(
    current: JobState, new: JobState
) -> None:
    if (current.value, new.value) in ALLOWED:
        check_transition(1, current, new)
    else:
        with pytest.raises(IllegalTransition) as refused:
            check_transition(7, current, new)
        assert f"job 7: illegal transition {current} -> {new}" == str(refused.value)
        assert (refused.value.current, refused.value.new) == (current, new)


def test_the_table_is_exactly_the_documented_lifecycle() -> None:
    assert {(a.value, b.value) for a, b in TRANSITIONS} == ALLOWED


def test_succeeded_and_cancelled_jobs_never_move_again() -> None:
    for state in (JobState.SUCCEEDED, JobState.CANCELLED):
        assert state in TERMINAL
        assert not [b for a, b in TRANSITIONS if a is state]
