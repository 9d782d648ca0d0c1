"""Messages that cross processes survive the trip unchanged (the exception included), and
anything else is refused as a bad frame."""

from __future__ import annotations

import pytest

from actors.errors import WorkflowRejected
from actors.scheduler import remote
from actors.scheduler.messages import CheckWorkflow, Doom, Finished, Release, Track, WorkflowChecked
from transport import protocol as wire
from transport.errors import BadFrame

REQUEST = wire.SubmitWorkflow(7, "wf", [wire.StepSpec("a", wire.JobSpec("t", args=wire.pack([1])))])


@pytest.mark.parametrize(
    "message",
    [
        Track(5, [1, 2]),
        Finished([(1, "SUCCEEDED"), (2, "FAILED")]),
        Release([3, 4]),
        Doom([(5, "upstream job 1 ended FAILED")]),
        CheckWorkflow(b"peer", REQUEST),
        WorkflowChecked(b"peer", REQUEST, [0], None),
    ],
)
def test_each_message_round_trips(message: object) -> None:
    assert remote.decode(remote.encode(message)) == message


def test_a_rejection_arrives_as_the_same_exception() -> None:
    sent = WorkflowChecked(
        b"p", REQUEST, [], WorkflowRejected("cycle", "steps form a cycle: a -> a")
    )
    got = remote.decode(remote.encode(sent))
    assert isinstance(got.rejection, WorkflowRejected)
    assert (got.rejection.code, got.rejection.message) == ("cycle", "steps form a cycle: a -> a")


def test_garbage_and_unknown_kinds_are_bad_frames() -> None:
    with pytest.raises(BadFrame):
        remote.decode(b"\x00\x01garbage")
    with pytest.raises(BadFrame):
        remote.decode(remote._encoder.encode(remote.Envelope("Nope", wire.NONE_RAW)))
    with pytest.raises(TypeError):
        remote.encode(wire.GetStatus(1))
