"""The gateway's fast request decoder (issue 19) accepts and refuses exactly what
``decode_request`` does, with the same errors; a Submit comes out as a Submit."""

from __future__ import annotations

import msgspec
import pytest

from transport import protocol as wire
from transport.errors import BadFrame
from transport.fast_requests import decode_request_fast


def outcome(decode: object, frame: bytes) -> object:
    try:
        message = decode(frame)  # type: ignore[operator]
    except BadFrame as exc:
        return (exc.code, exc.message, exc.request_id)
    return msgspec.to_builtins(message, enc_hook=bytes)


@pytest.mark.parametrize(
    "queues",
    [["default"], ["a", "b.c:d-e_f"], ["ok", "bad queue"], ["x" * 65], [""], ["é"]],
)
def test_submits_decode_and_refuse_as_the_strict_decoder_does(queues: list[str]) -> None:
    jobs = [wire.JobSpec("t", queue=q, depends_on=[1]) for q in queues]
    frame = wire.encode(wire.Submit(7, jobs))
    assert outcome(decode_request_fast, frame) == outcome(wire.decode_request, frame)


def test_a_fast_submit_is_a_submit_of_job_specs() -> None:
    message = decode_request_fast(wire.encode(wire.Submit(1, [wire.JobSpec("t")] * 3)))
    assert isinstance(message, wire.Submit)
    assert type(message).__name__ == "Submit", "a refusal naming the type says Submit"
    assert all(isinstance(spec, wire.JobSpec) for spec in message.jobs)
    assert [spec.queue for spec in message.jobs] == ["default"] * 3


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        wire.encode(wire.GetStatus(3)),
        msgspec.msgpack.encode(["Submit", 1, [["t", b"x"]]]),
        msgspec.msgpack.encode(["Submit", 1, []]),
    ],
)
def test_other_frames_as_the_strict_decoder(frame: bytes) -> None:
    assert outcome(decode_request_fast, frame) == outcome(wire.decode_request, frame)
