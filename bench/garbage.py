"""The seeded stream of hostile frames a fuzz run sends (``bench.frames`` says what they
are and which of them must change nothing): ``Garbage(seed, known_ids).shot()`` draws one
``Shot``, of a kind chosen by ``bench.frames.WEIGHTS``; the same seed gives the same
stream. A drawn frame that decodes into something not ``harmless`` is drawn again."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from bench.frames import (
    FAR_ID,
    FUZZ_NAME,
    HOSTILE_FLOATS,
    HOSTILE_INTS,
    HOSTILE_STRS,
    KINDS,
    TAGS,
    VALID_QUEUE,
    WEIGHTS,
    Shot,
    as_received,
    harmless,
    random_value,
    valid_frames,
)
from transport import protocol as wire

_encode = msgspec.msgpack.encode
_MAX = wire.MAX_FRAME_BYTES
# Headers that declare more than follows: array32, map32, str32, bin32, ext32 of 4 Gi.
_HUGE_HEADERS = (b"\xdd", b"\xdf", b"\xdb", b"\xc6", b"\xc9")


class Garbage:
    """``known_ids``: the honest client's jobs are (or will be) ids 1..known_ids; forged
    worker frames name them. ``big``: allow the 8 MiB frames of kind ``size_edge``."""

    def __init__(self, seed: int, known_ids: int = 100, big: bool = True) -> None:
        self.rng = random.Random(seed)
        self.known_ids = known_ids
        weights = {k: w for k, w in WEIGHTS.items() if big or k != "size_edge"}
        self.kinds, self.weights = list(weights), list(weights.values())
        self.redrawn = 0  # mutants that decoded into a frame that could change state

    def shot(self, kind: str | None = None) -> Shot:
        kind = kind or self.rng.choices(self.kinds, self.weights)[0]
        assert kind in KINDS, kind
        for _ in range(1000):
            messages = getattr(self, f"_{kind}")()
            if all(harmless(as_received(parts)) for parts in messages):
                return Shot(kind, messages)
            self.redrawn += 1
        raise RuntimeError(f"no harmless frame of kind {kind} in 1000 draws")

    # ------------------------------------------------------------------ helpers

    def _valid(self) -> bytes:
        return wire.encode(self.rng.choice(valid_frames(self.rng, self.known_ids)))

    def _id(self) -> int:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.randint(1, self.known_ids)
        return rng.choice((*HOSTILE_INTS, FAR_ID + rng.randrange(10**6)))

    # -------------------------------------------------------------------- kinds

    def _random(self) -> list[list[bytes]]:
        n = self.rng.choice((0, 1, 2, 3, 8, 16, 64, 256, 4096))
        return [[self.rng.randbytes(self.rng.randint(0, n))]]

    def _truncated(self) -> list[list[bytes]]:
        frame = self._valid()
        return [[frame[: self.rng.randrange(len(frame))]]]

    def _bitflip(self) -> list[list[bytes]]:
        frame = bytearray(self._valid())
        for _ in range(self.rng.choice((1, 1, 2, 3, 8))):
            frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
        return [[bytes(frame)]]

    def _wrong_shape(self) -> list[list[bytes]]:
        rng = self.rng
        tag = rng.choice(TAGS).__name__
        fields = [random_value(rng) for _ in range(rng.randrange(8))]
        shape = rng.randrange(4)
        if shape == 0:  # the right tag, fields of any type and number
            value: object = [tag, *fields]
        elif shape == 1:  # a map where an array is expected
            value = {tag: fields}
        elif shape == 2:  # no tag, or a tag that is no message
            value = [rng.choice((None, 7, "Nope", "", tag.lower())), *fields]
        else:
            value = random_value(rng)
        return [[_encode(value)]]

    def _huge_length(self) -> list[list[bytes]]:
        rng = self.rng
        header = rng.choice(_HUGE_HEADERS) + rng.choice((b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"))
        if header[0] == 0xC9:
            header += b"\x01"  # ext32's type byte
        prefix = rng.choice((b"", b"\x93\xa6Submit\x01", b"\x92\xa4Wait\x01", b"\x92\xa5Hello"))
        return [[prefix + header + rng.randbytes(rng.randrange(32))]]

    def _deep(self) -> list[list[bytes]]:
        rng = self.rng
        depth = rng.choice((100, 1000, 10_000, 100_000))
        opener = rng.choice((b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"))
        where = rng.choice(
            (
                b"",
                b"\x93\xa6Submit\x01\x91\x92\xa6record",  # inside a job's raw args
                b"\x92\xa7Results\x91\x94\x01\x01\xc3",  # inside a result's raw value
                b"\x93\xa4Wait\x01",
            )
        )
        return [[where + opener * depth + b"\xc0"]]

    def _size_edge(self) -> list[list[bytes]]:
        """A Submit padded (in its raw args) to the limit, one byte under, or one over."""
        target = _MAX + self.rng.choice((-1, 0, 1))
        probe = wire.encode(wire.Submit(1, [wire.JobSpec("record", depends_on=[FAR_ID])]))
        # args as one bin32 value: 5 header bytes replace the 1-byte empty array.
        pad = target - (len(probe) - 1 + 5)
        args = msgspec.Raw(b"\xc6" + pad.to_bytes(4, "big") + bytes(pad))
        spec = wire.JobSpec("record", args, depends_on=[FAR_ID])
        frame = wire.encode(wire.Submit(1, [spec]))
        assert len(frame) == target, (len(frame), target)
        return [[frame]]

    def _multipart(self) -> list[list[bytes]]:
        parts = [self._valid() for _ in range(self.rng.randint(2, 4))]
        if self.rng.random() < 0.3:
            parts[0] = b""
        return [parts]

    def _sequence(self) -> list[list[bytes]]:
        """A hello in another protocol version, then requests as if it had been accepted."""
        rng = self.rng
        version = rng.choice((0, 2, -1, 2**31, 2**63 - 1))
        hello = rng.choice(
            (
                wire.ClientHello(version),
                wire.WorkerHello(version, f"{FUZZ_NAME}-seq", 1, [VALID_QUEUE], ["record"]),
            )
        )
        after = [self._valid() for _ in range(rng.randint(1, 3))]
        return [[wire.encode(hello)], *([f] for f in after)]

    def _hostile(self) -> list[list[bytes]]:
        """Frames that decode (or almost) with hostile values in their fields."""
        rng = self.rng
        rid = rng.choice((0, 2**62, rng.randrange(2**32)))
        far = [FAR_ID + rng.randrange(10**6)]
        s = rng.choice(HOSTILE_STRS)
        f = rng.choice(HOSTILE_FLOATS)
        big = rng.choice((10, 1000, 100_000))
        ids = [self._id() for _ in range(10)] * (big // 10)
        spec = wire.JobSpec
        steps_cycle = [
            wire.StepSpec("a", spec("record", queue=VALID_QUEUE), ["b"]),
            wire.StepSpec("b", spec("record", queue=VALID_QUEUE), ["a"]),
        ]
        choices: list[Callable[[], object]] = [
            lambda: wire.GetJob(rid, self._id()),
            lambda: ["GetJob", rid, rng.choice(HOSTILE_INTS)],
            lambda: wire.Wait(rid, ids),
            lambda: ["Wait", rid, [rng.choice(HOSTILE_INTS)] * big],
            lambda: wire.CancelJobs(rid, [FAR_ID + i % 2**20 for i in ids]),
            lambda: wire.Requeue(rid, [FAR_ID], rng.random() < 0.5),
            lambda: wire.ListJobs(rid, s[:32], s[:64], rng.randint(1, 100_000)),
            lambda: ["ListJobs", rid, s, s, rng.choice(HOSTILE_INTS)],
            lambda: wire.GetWorkflow(rid, rng.randint(1, 2**62)),
            lambda: wire.Subscribe(rid, self._id() if rng.random() < 0.5 else None),
            lambda: ["Heartbeat", [[self._id(), rng.choice(HOSTILE_INTS)]], f, rng.randrange(9)],
            lambda: wire.Heartbeat([(self._id(), rng.randint(1, 3))] * (big % 10_001), 1.0),
            lambda: [
                "WorkerHello",
                1,
                f"{FUZZ_NAME}-h",
                rng.choice(HOSTILE_INTS),
                ["fuzz"],
                [],
                [],
            ],
            lambda: wire.WorkerHello(
                1, f"{FUZZ_NAME}-h", 1, ["fuzz"], [s or "x"], [(self._id(), 1)]
            ),
            lambda: ["WorkerHello", 1, f"{FUZZ_NAME}-n", 1, ["fuzz"], [], [], f],
            lambda: wire.Results(
                [wire.JobResult(self._id(), 1, True, wire.pack(s))], rng.randint(-1, 9)
            ),
            lambda: ["Results", [[self._id(), 1, False, None, s]], rng.choice(HOSTILE_INTS)],
            lambda: ["Progress", [[self._id(), 1, f, s]]],
            lambda: wire.Goodbye([(self._id(), rng.randint(1, 3))]),
            lambda: wire.Submit(rid, [spec(s or "t", depends_on=far, queue=VALID_QUEUE)]),
            lambda: wire.Submit(
                rid, [spec("record", queue=VALID_QUEUE)] * 999 + [spec("r", depends_on=far)]
            ),
            lambda: ["Submit", rid, [["record", [], {}, 0, "default", far, 3, None, f]]],
            lambda: ["Submit", rid, [["record", "not args", 1, 2**63, s, [-1]]]],
            lambda: wire.SubmitWorkflow(rid, s[:256], steps_cycle),
            lambda: ["SubmitWorkflow", rid, "wf", [["a", ["record"], ["zz"]]], s],
            lambda: ["Drain", rid],
            lambda: ["ClientHello", rng.choice(HOSTILE_INTS)],
        ]
        pick = rng.choice(choices)()
        if isinstance(pick, wire.Message):
            return [[wire.encode(pick)]]
        return [[_encode(pick)]]
