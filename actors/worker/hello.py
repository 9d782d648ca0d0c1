"""A worker's hello as the scheduler will read it, checked when the worker is made.

The scheduler refuses a hello whose name or queues the protocol cannot carry (a queue named
"a b", a name over 128 characters), and a worker would say it again and again, never
serving. ``checked_queues`` decodes the hello the way the scheduler does and raises
ValueError naming what is wrong, before anything connects.
"""

from __future__ import annotations

from transport import protocol as wire
from transport.errors import BadFrame


def checked_queues(name: str, slots: int, queues: tuple[str, ...]) -> tuple[str, ...]:
    """``queues``, once a hello with this name, slot count and queues would be accepted."""
    hello = wire.WorkerHello(wire.PROTOCOL_VERSION, name, slots, list(queues))
    if not queues:
        raise ValueError(f"worker {name!r} serves no queue")
    try:
        wire.decode_request(wire.encode(hello))
    except BadFrame as exc:
        raise ValueError(f"worker {name!r} could never say hello: {exc.message}") from None
    return queues
