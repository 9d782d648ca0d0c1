"""The DAG resolver's state machine: releases and dooms touch only the edges involved."""

from __future__ import annotations

from actors.scheduler.dag import DependencyGraph


def test_a_child_is_released_only_when_its_last_parent_succeeds() -> None:
    g = DependencyGraph()
    g.track(3, [1, 2])
    assert g.finished(1, "SUCCEEDED") == ([], [])
    assert g.finished(2, "SUCCEEDED") == ([3], [])
    assert len(g) == 0


def test_a_failed_parent_dooms_every_descendant_with_the_original_cause() -> None:
    g = DependencyGraph()
    g.track(2, [1])
    g.track(3, [2])
    g.track(4, [3, 9])
    g.track(5, [9])
    released, doomed = g.finished(1, "FAILED")
    assert released == []
    assert sorted(doomed) == [
        (2, "upstream job 1 ended FAILED"),
        (3, "upstream job 1 ended FAILED"),
        (4, "upstream job 1 ended FAILED"),
    ]
    assert g.finished(9, "SUCCEEDED") == ([5], [])


def test_a_diamond_releases_the_join_once() -> None:
    g = DependencyGraph()
    g.track(2, [1])
    g.track(3, [1])
    g.track(4, [2, 3])
    assert sorted(g.finished(1, "SUCCEEDED")[0]) == [2, 3]
    assert g.finished(2, "SUCCEEDED") == ([], [])
    assert g.finished(3, "SUCCEEDED") == ([4], [])
