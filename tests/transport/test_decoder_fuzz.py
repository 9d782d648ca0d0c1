"""Fuzzing the decoders (issue 16): every hostile frame, of every kind the bench's fuzz run
sends, through ``decode_request`` and ``decode_reply``: only a typed message or BadFrame
with a stable code comes out, never another exception; what decodes encodes again; and
``request_id_of``, which reads a refused frame's first bytes, never raises either.

Mutations of valid frames of every message type (both directions) are drawn by
hypothesis strategies, so a failure shrinks to a small frame; the bench's generator
(``bench.garbage``), seeded by hypothesis, adds its own kinds (huge declared lengths, deep
nesting, hostile values, multi-part) at a few thousand frames."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.frames import (
    KINDS,
    TAGS,
    as_received,
    harmless,
    refused_at_gateway,
    valid_frames,
    valid_replies,
)
from bench.garbage import Garbage
from transport import protocol as wire
from transport.errors import BadFrame
from transport.framing import request_id_of
from transport.protocol import REQUEST_TAGS

pytestmark = pytest.mark.slow  # thousands of hypothesis examples: seconds each test

CODES = {"bad_frame", "invalid", "too_large"}
REQUESTS = [wire.encode(m) for m in valid_frames(random.Random(1), 50)]
REPLIES = [wire.encode(m) for m in valid_replies(random.Random(1))]
FAST = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_both(frame: bytes) -> None:
    """Both decoders: a message (which encodes again) or BadFrame, nothing else."""
    for decode in (wire.decode_request, wire.decode_reply):
        refused: BadFrame | None = None
        try:
            message = decode(frame)
        except BadFrame as exc:
            refused = exc
        if refused is not None:
            assert refused.code in CODES, refused.code
            assert 0 <= refused.request_id <= 2**62
        else:
            assert isinstance(message, wire.Message)
            wire.encode(message)
    assert 0 <= request_id_of(frame, REQUEST_TAGS) < 2**62


def test_every_message_type_has_a_valid_sample_that_decodes() -> None:
    assert {type(wire.decode_request(f)) for f in REQUESTS} == set(TAGS)
    assert len({type(wire.decode_reply(f)) for f in REPLIES}) == len(REPLIES)


@FAST
@given(st.sampled_from(REQUESTS + REPLIES), st.data())
def test_a_truncated_valid_frame_is_refused_or_decodes(frame: bytes, data: st.DataObject) -> None:
    decode_both(frame[: data.draw(st.integers(0, len(frame)))])


@FAST
@given(
    st.sampled_from(REQUESTS + REPLIES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=8),
)
def test_a_bit_flipped_valid_frame_is_refused_or_decodes(
    frame: bytes, flips: list[tuple[int, int]]
) -> None:
    mutated = bytearray(frame)
    for at, bit in flips:
        mutated[at % len(mutated)] ^= 1 << bit
    decode_both(bytes(mutated))


@FAST
@given(st.sampled_from(REQUESTS + REPLIES), st.binary(max_size=64), st.data())
def test_a_valid_frame_with_bytes_spliced_in_is_refused_or_decodes(
    frame: bytes, junk: bytes, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(frame)))
    cut = data.draw(st.integers(0, 8))
    decode_both(frame[:at] + junk + frame[at + cut :])


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.sampled_from([t.__name__ for t in TAGS]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@FAST
@given(st.sampled_from([t.__name__ for t in TAGS]), st.lists(values, max_size=12))
def test_a_known_tag_with_fields_of_any_shape_is_refused_or_decodes(
    tag: str, fields: list[object]
) -> None:
    decode_both(msgspec.msgpack.encode([tag, *fields]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([k for k in KINDS if k != "size_edge"]))
def test_the_bench_generator_frames_are_refused_or_decode(seed: int, kind: str) -> None:
    garbage = Garbage(seed, known_ids=50, big=False)
    for _ in range(50):  # 40 examples x 50: two thousand frames per run
        for parts in garbage.shot(kind).messages:
            decode_both(as_received(parts))


def test_frames_at_under_and_over_the_size_limit_are_judged_by_size_first() -> None:
    garbage = Garbage(7)
    codes = []
    for _ in range(6):
        [[frame]] = garbage.shot("size_edge").messages
        decode_both(frame)
        code = "decoded"
        try:
            wire.decode_request(frame)
        except BadFrame as exc:
            code = exc.code
        codes.append((len(frame) - wire.MAX_FRAME_BYTES, code))
    assert all(code == ("too_large" if over > 0 else "decoded") for over, code in codes), codes
    assert {over for over, _ in codes} <= {-1, 0, 1}


def test_frames_the_generator_keeps_are_garbage_or_harmless() -> None:
    garbage = Garbage(11, known_ids=50, big=False)
    shots = [garbage.shot() for _ in range(3000)]
    frames = [as_received(parts) for shot in shots for parts in shot.messages]
    assert all(harmless(f) for f in frames)
    assert {s.kind for s in shots} == set(KINDS) - {"size_edge"}
    refused = sum(refused_at_gateway(f) for f in frames)
    assert len(frames) * 0.5 < refused < len(frames), "mostly garbage, some valid frames"


def test_the_same_seed_gives_the_same_stream() -> None:
    one, two = Garbage(3, big=False), Garbage(3, big=False)
    assert [one.shot() for _ in range(200)] == [two.shot() for _ in range(200)]
