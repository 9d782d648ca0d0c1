"""Decoding untrusted frames: anything at all either decodes to a typed message or raises
BadFrame with a stable code; nothing else escapes."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport import protocol as wire
from transport.errors import BadFrame

CODES = {"bad_frame", "invalid", "too_large"}
# Generation speed and per-example time are the machine's load, not the decoder's
# correctness (as in test_decoder_fuzz.py): a loaded run failed the too_slow health check.
LOADED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@settings(LOADED, max_examples=3000)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_decode_or_raise_bad_frame(frame: bytes) -> None:
    try:
        wire.decode_request(frame)
    except BadFrame as exc:
        assert exc.code in CODES  # noqa: PT017 - decoding may also succeed; both are fine


@pytest.mark.slow
@settings(LOADED, max_examples=500)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
        lambda inner: st.lists(inner, max_size=5),
        max_leaves=20,
    )
)
def test_arbitrary_msgpack_values_decode_or_raise_bad_frame(value: object) -> None:
    try:
        wire.decode_request(msgspec.msgpack.encode(value))
    except BadFrame as exc:
        assert exc.code in CODES  # noqa: PT017 - decoding may also succeed; both are fine


def test_invalid_utf8_in_a_string_is_a_bad_frame_not_a_crash() -> None:
    frame = b"\x93\xa6Submit\x01\x91\x91\xa2\xff\xfe"  # a task name that is not UTF-8
    with pytest.raises(BadFrame) as refused:
        wire.decode_request(frame)
    assert refused.value.code == "bad_frame"


def test_a_refused_request_keeps_its_request_id_for_the_reply() -> None:
    frame = msgspec.msgpack.encode(["Submit", 41, "not a list"])
    with pytest.raises(BadFrame) as refused:
        wire.decode_request(frame)
    assert (refused.value.code, refused.value.request_id) == ("invalid", 41)


def test_a_request_nested_too_deeply_or_cut_short_keeps_its_request_id() -> None:
    """The client waiting on it gets its refusal at once, not a timeout blaming the
    scheduler (a CLI's arguments can be nested that deep)."""
    nested = b"\x93\xa6Submit\xcd\x10\x92\x91\x92\xa1t" + b"\x91" * 10_000 + b"\xc0"
    for frame in (nested, nested[:40]):
        with pytest.raises(BadFrame) as refused:
            wire.decode_request(frame)
        assert (refused.value.code, refused.value.request_id) == ("bad_frame", 4242)


def test_a_refused_frame_that_is_no_request_carries_no_request_id() -> None:
    """A hello's first field is its protocol version, a heartbeat's its leases: read as a
    request id, its refusal would answer some other request of that peer's."""
    hello = msgspec.msgpack.encode(["WorkerHello", 77, "", 0])  # empty name, no slots
    results = msgspec.msgpack.encode(["Results", 5, "not a list"])
    too_large = b"\x93\xabWorkerHello\x05" + b"x" * wire.MAX_FRAME_BYTES
    for frame in (hello, results, hello[:12], too_large):
        with pytest.raises(BadFrame) as refused:
            wire.decode_request(frame)
        assert refused.value.request_id == 0, frame[:20]
    # A request's own refusal, too large, still names it.
    big = b"\x93\xa6GetJob\x2a" + b"x" * wire.MAX_FRAME_BYTES
    with pytest.raises(BadFrame) as refused:
        wire.decode_request(big)
    assert (refused.value.code, refused.value.request_id) == ("too_large", 42)
    assert {"Submit", "GetJob", "Wait", "CancelJobs", "ListJobs"} <= wire.REQUEST_TAGS
    assert not wire.REQUEST_TAGS & {"WorkerHello", "Heartbeat", "Results", "ClientHello"}


def test_every_request_round_trips() -> None:
    messages = [
        wire.ClientHello(1),
        wire.WorkerHello(1, "w", 2, ["q"], ["t"], [(1, 2)]),
        wire.Submit(1, [wire.JobSpec("t", backoff=wire.Backoff(1, 2, 3))]),
        wire.Wait(2, [1]),
        wire.GetStatus(3),
        wire.GetJob(4, 1),
        wire.Results([wire.JobResult(1, 1, True)]),
        wire.Heartbeat([(1, 1)], 2.0),
        wire.Drain(),
        wire.Goodbye(),
        wire.CancelJobs(5, [1]),
        wire.ListJobs(6, "FAILED"),
        wire.Requeue(7, [], True),
    ]
    for message in messages:
        assert wire.decode_request(wire.encode(message)) == message
