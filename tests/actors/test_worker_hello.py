"""A worker the scheduler would refuse again and again fails when it is made instead."""

from __future__ import annotations

import pytest

from actors.worker.agent import Worker


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"queues": ("a b",)}, "could never say hello"),
        ({"queues": ()}, "serves no queue"),
        ({"name": "n" * 129}, "could never say hello"),
        ({"concurrency": 0}, "could never say hello"),
    ],
)
def test_a_hello_the_scheduler_would_refuse_is_a_value_error(
    options: dict[str, object], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Worker("tcp://127.0.0.1:5555", registry={}, **options)  # type: ignore[arg-type]


def test_a_hello_it_would_accept_makes_a_worker() -> None:
    worker = Worker("tcp://127.0.0.1:5555", name="w", queues=("a.b", "c:d-e_1"), registry={})
    assert worker.queues == ("a.b", "c:d-e_1")
