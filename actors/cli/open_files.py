"""How many files the long-running processes may hold open: every worker and client
connected to a scheduler takes one of its file descriptors (a TCP connection), so the soft
limit (``ulimit -n``, often 1,024) is how many peers it can serve at once. Past it, ZeroMQ
cannot accept another connection: no new client or worker gets an answer until some leave.

The scheduler, the workers and the DAG resolver raise their soft limit to the hard one at
start, as servers do (the hard limit is the administrator's: ``LimitNOFILE=`` in systemd,
``ulimit -Hn``, ``nofile`` in limits.conf), and the scheduler says so when even that leaves
room for fewer than ``FEW`` peers.
"""

from __future__ import annotations

import resource

# The soft limit taken when the hard one is unlimited.
UNLIMITED_TARGET = 1 << 20
# Below this many open files a scheduler warns at start.
FEW = 4096


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. macOS caps it below the hard limit: keep what we have
        return soft
    return target


def few_open_files(limit: int, program: str) -> str | None:
    """The start-up warning for a limit that leaves room for few peers, or None."""
    if limit == resource.RLIM_INFINITY or limit >= FEW:
        return None
    return (
        f"{program}: WARNING: this process may hold only {limit} open files (its hard limit, "
        "ulimit -Hn): each connected worker and client takes one, so fewer than that can "
        "connect at once; raise the hard limit (LimitNOFILE= in systemd, nofile in "
        "limits.conf) to serve more"
    )
