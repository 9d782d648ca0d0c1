"""A network namespace for one test: a "host" of its own, joined to this one by a veth
pair (a cable), whose processes reach a scheduler on this side only through that cable,
and the cable can be pulled and plugged back.

Needs root and ip(8) (iproute2). ``namespace()`` fails the test when either is missing and
``$CORRAL_TEST_EVERYTHING`` is set (CI, ``.ci/run``: nothing may be skipped there), and
skips it with the reason otherwise (a developer's machine without root).

Names and addresses are unique per test process (pid) and per namespace within it, so
tests running in parallel (pytest-xdist) never share a namespace, an interface or a
subnet: namespace ``corral<pid>n<k>``, interfaces ``cr<pid>h<k>`` (this side) and
``cr<pid>n<k>`` (inside; both at most 15 characters, the kernel's limit), and a /30 in
10.0.0.0/8 no route of this machine covers yet. A namespace left over by a test process
that died (SIGKILL: its cleanup never ran) is removed by the next one created.

Pulling the cable (``cut``) sets the interface inside the namespace down: its peer here
loses carrier, so packets either way vanish without a reset or an ICMP error, and TCP
connections stay open, retransmitting, until ``restore``. (Setting this side's end down
instead would remove its route, and packets for the namespace would leave by the default
route: traffic outside this machine.) Everything is removed on leaving ``namespace()``,
the test passed or not.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from tests.helpers.procs import give_up

_counter = itertools.count()
_OURS = re.compile(r"^(?:corral|cr)(\d+)[hn]\d+$")  # the names below, with their pid


def ip_command() -> str | None:
    """ip(8), also where root's PATH has it when this PATH does not."""
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
    )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [ip_command() or "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done


@dataclass
class Namespace:
    name: str  # the network namespace
    host_dev: str  # the cable's end on this side
    ns_dev: str  # its end inside the namespace
    host_ip: str  # this side's address: where a scheduler binds for the namespace
    ns_ip: str  # the namespace's address

    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return [ip_command() or "ip", "netns", "exec", self.name]

    def free_address(self) -> str:
        """A tcp:// address on this side's end of the cable, its port free now."""
        with socket.socket() as s:
            s.bind((self.host_ip, 0))
            return f"tcp://{self.host_ip}:{s.getsockname()[1]}"

    def cut(self) -> None:
        """Pull the cable: from now on packets either way vanish."""
        _ip("-n", self.name, "link", "set", self.ns_dev, "down")
        # Still routed into the cable (now without carrier), not out by the default route.
        route = _ip("-4", "route", "get", self.ns_ip).stdout
        assert f" dev {self.host_dev} " in route, f"{self.ns_ip} leaves elsewhere: {route}"

    def restore(self) -> None:
        """Plug the cable back in."""
        _ip("-n", self.name, "link", "set", self.ns_dev, "up")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep() -> None:
    """Remove namespaces and interfaces left by test processes that died."""
    names = _ip("netns", "list", check=False).stdout.split()
    links = [line.split(":")[1].strip().split("@")[0] for line in _links()]
    for name in names:
        found = _OURS.match(name)
        if found and not _alive(int(found.group(1))):
            _ip("netns", "delete", name, check=False)
    for dev in links:
        found = _OURS.match(dev)
        if found and not _alive(int(found.group(1))):
            _ip("link", "delete", dev, check=False)


def _links() -> list[str]:
    return [line for line in _ip("-o", "link", "show", check=False).stdout.splitlines() if line]


def _free_subnet(first: int) -> ipaddress.IPv4Network:
    """A /30 in 10.0.0.0/8 that no route here (but a default one) covers or lies in."""
    for step in range(64):
        index = (first + step * 7919) % (1 << 22)  # 2^22 /30s in a /8
        net = ipaddress.IPv4Network((0x0A000000 + index * 4, 30))
        routes = "".join(
            _ip("-4", "route", "show", "table", "all", how, str(net), check=False).stdout
            for how in ("match", "root")  # routes covering it, and routes within it
        )
        if all(line.startswith("default") for line in routes.splitlines() if line.strip()):
            return net
    raise RuntimeError("no free /30 in 10.0.0.0/8 after 64 tries")


def require_root_networking() -> None:
    """Give up on the test unless it may create network namespaces."""
    if os.geteuid() != 0:
        give_up("a network namespace needs root")
    if ip_command() is None:
        give_up("a network namespace needs ip(8) (Debian: apt-get install iproute2)")


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    """A new namespace joined to this one by a veth pair, both ends up with addresses;
    removed on leaving, whatever happened."""
    require_root_networking()
    _sweep()
    pid, k = os.getpid(), next(_counter)
    net = _free_subnet(pid * 8 + k)
    host_ip, ns_ip = (str(a) for a in net.hosts())
    ns = Namespace(f"corral{pid}n{k}", f"cr{pid}h{k}", f"cr{pid}n{k}", host_ip, ns_ip)
    made = _ip("netns", "add", ns.name, check=False)
    if made.returncode != 0:
        give_up(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        _ip("link", "add", ns.host_dev, "type", "veth", "peer", "name", ns.ns_dev,
            "netns", ns.name)  # fmt: skip
        _ip("addr", "add", f"{host_ip}/30", "dev", ns.host_dev)
        _ip("link", "set", ns.host_dev, "up")
        _ip("-n", ns.name, "addr", "add", f"{ns_ip}/30", "dev", ns.ns_dev)
        _ip("-n", ns.name, "link", "set", ns.ns_dev, "up")
        _ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        # Deleting one end deletes both at once, even while processes still run inside.
        _ip("link", "delete", ns.host_dev, check=False)
        _ip("netns", "delete", ns.name, check=False)
