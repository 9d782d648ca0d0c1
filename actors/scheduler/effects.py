"""What the scheduler does once a write is committed: built before the write, carried out
after it, so nothing leaves the process (an acknowledgement, a lease, an outcome, an event)
for state that SQLite does not have yet."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.scheduler.job import Job
from actors.scheduler.messages import RevokeLease, Send
from transport import protocol as wire


class Effects(msgspec.Struct):
    """What to do once a write is committed. Built before, carried out after."""

    sends: list[Send] = []
    ready: list[Job] = []
    finished: list[Job] = []
    leases: list[tuple[bytes, wire.Assignment]] = []
    revokes: list[RevokeLease] = []
    events: list[tuple[Any, ...]] = []
