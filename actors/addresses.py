"""Scheduler addresses for workers and clients: the list they are given, and which one to
talk to next (issue 15: several schedulers, one leader).

``--connect tcp://a:5555,tcp://b:5555`` (and ``CORRAL_CONNECT`` / ``CORRAL_ADDRESS``, and
``Client("tcp://a:5555,tcp://b:5555")`` or a list) names every scheduler; one leads and
the others stand by. ``parse`` checks every address up front (ConfigError naming the bad
one). ``Follower`` is the policy, with no I/O: a worker or client talks to one address at
a time (``current``); a standby's NotLeader names the leader to follow (``leader_named``);
an address that does not answer, or a standby that names no usable leader, sends it to
the next one (``next``, round robin). A single address behaves as before: ``next`` keeps
it, and only the pause before the next hello grows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from actors.errors import ConfigError

# The transports' schemes (transport/__init__.py); tcp needs HOST:PORT.
SCHEMES = ("tcp", "ipc", "inproc", "mem")
ALLOWED = (
    "a scheduler address: tcp://HOST:PORT (PORT 1 to 65535), ipc:///PATH, inproc://NAME or "
    "mem://NAME; several (one leader, standbys) separated by commas"
)

# A live scheduler answers a hello in milliseconds, leader (Welcome) or standby (NotLeader),
# even while it commits: one second without an answer means nobody is there, so the next
# address is tried. The wait doubles after each round of the list with no Welcome, so a
# fleet of workers facing dead schedulers sends few hellos: up to 8 s with one address
# (its socket stays, and ZeroMQ delivers the waiting hello the moment a scheduler starts
# there, so a long wait costs nothing), up to 2 s per address with several (a move closes
# the socket: a scheduler that starts is found only when the round comes back to it).
ANSWER_WAIT_S = 1.0
ANSWER_WAIT_MAX_S = 8.0
ANSWER_WAIT_MAX_SEVERAL_S = 2.0
# A standby that names no usable leader (an election is under way) is asked again, or the
# next address tried, after this pause: the election polls every 0.25 s, and a fleet must
# not spin through the list meanwhile.
REFUSED_PAUSE_S = 0.25
# An address left because it stopped answering is skipped by ``next`` for this long (about
# one lease), and a standby naming it as leader for the term we saw end is not followed:
# until the new leader's term begins, the standbys still name the dead one.
SUSPECT_S = 5.0


def parse(spec: str | Sequence[str], setting: str = "address") -> tuple[str, ...]:
    """Every address in ``spec`` (comma-separated, or a list), stripped, in order, each
    once; raises ConfigError naming ``setting`` and the first address not allowed."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    addresses: list[str] = []
    for part in parts:
        address = part.strip() if isinstance(part, str) else part
        if address == "":
            continue  # "a,b," and "a, b" are what they look like
        if not (isinstance(address, str) and valid(address)):
            raise ConfigError(setting, address, ALLOWED)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ConfigError(setting, spec, ALLOWED)
    return tuple(addresses)


def valid(address: str) -> bool:
    """Whether a worker or client can connect to ``address``."""
    scheme, sep, rest = address.partition("://")
    if not sep or not rest or scheme not in SCHEMES or any(c.isspace() for c in address):
        return False
    if scheme != "tcp":
        return True
    host, colon, port = rest.rpartition(":")
    return bool(colon and host and host != "*") and port.isdigit() and 1 <= int(port) <= 65535


def spoken(addresses: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: for messages."""
    if len(addresses) < 2:
        return "".join(addresses)
    return f"{', '.join(addresses[:-1])} or {addresses[-1]}"


class Follower:
    """Which scheduler to talk to now, and where to go next. Plain bookkeeping: the link
    (``actors.link``) connects, sends and waits."""

    def __init__(
        self, addresses: Sequence[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.addresses = tuple(addresses)
        assert self.addresses, "parse() refuses an empty list"
        self.current = self.addresses[0]
        self._clock = clock
        self._index = 0  # the listed address we talk to, or last did (a leader may be unlisted)
        self._tries = 0  # addresses tried since the last Welcome
        self._suspect: dict[str, tuple[float, int]] = {}  # address -> (until, term seen then)
        self.term = 0  # the highest leader term heard of (Welcome.term, NotLeader.term)

    @property
    def several(self) -> bool:
        return len(self.addresses) > 1

    def answer_wait(self) -> float:
        """How long a hello waits for an answer at the current address."""
        rounds = self._tries // len(self.addresses)
        cap = ANSWER_WAIT_MAX_SEVERAL_S if self.several else ANSWER_WAIT_MAX_S
        return min(ANSWER_WAIT_S * 2.0**rounds, cap)

    def welcomed(self, term: int) -> None:
        self._tries = 0
        self.term = max(self.term, term)

    def suspect(self, address: str) -> None:
        """``address`` stopped answering: skip it for a while."""
        self._suspect[address] = (self._clock() + SUSPECT_S, self.term)

    def _suspected(self, address: str) -> bool:
        until, _ = self._suspect.get(address, (0.0, 0))
        return until > self._clock()

    def next(self) -> str:
        """The address to try after the current one (it becomes current): the next listed
        one that is not suspected, or simply the next listed one if all are."""
        self._tries += 1
        n = len(self.addresses)
        steps = [s for s in range(1, n + 1) if not self._suspected(self._at(s))] or [1]
        self._index = (self._index + steps[0]) % n
        self.current = self.addresses[self._index]
        return self.current

    def _at(self, step: int) -> str:
        return self.addresses[(self._index + step) % len(self.addresses)]

    def leader_named(self, leader: str, term: int) -> str | None:
        """The address to follow when the current one says it is a standby and names
        ``leader`` (of ``term``); None when that is no help: no leader named (an election
        is under way), the current address itself, an address no transport can reach, or
        one that stopped answering during that very term (the standbys still name the
        dead leader until the next term begins)."""
        self.term = max(self.term, term)
        if not leader or leader == self.current or not valid(leader):
            return None
        if self._suspected(leader) and term <= self._suspect[leader][1]:
            return None
        return leader

    def follow(self, leader: str) -> None:
        """Talk to ``leader`` now (listed or not: a standby named it)."""
        self.current = leader
        if leader in self.addresses:
            self._index = self.addresses.index(leader)
