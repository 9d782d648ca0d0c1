"""The processes a bench run starts end with it, even when the bench itself is killed (a
test's timeout, a second Ctrl-C): each is started through a short prelude that asks Linux to
SIGKILL it when its parent goes (``PR_SET_PDEATHSIG``, kept across the ``exec``), then
becomes the program itself, same pid.

Linux sends that signal when the *thread* that started the process ends, not the process:
start children from the main thread (the event loop's), and wait for them to listen in
another thread if need be (``bench.harness.Cluster.spawn_scheduler``). Elsewhere the
prelude does nothing but ``exec``.
"""

from __future__ import annotations

import os
import sys

# argv: the parent's pid, then the program. A parent that died before the prctl leaves the
# child with another parent already: it exits at once instead of running on, orphaned.
PRELUDE = (
    "import ctypes, os, signal, sys; "
    "sys.platform.startswith('linux') and ctypes.CDLL(None).prctl(1, signal.SIGKILL); "
    "os.getppid() == int(sys.argv[1]) or os._exit(70); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def command(*argv: str) -> list[str]:
    """``argv`` (a program and its arguments) started so that it dies with this process."""
    return [sys.executable, "-c", PRELUDE, str(os.getpid()), *argv]


def family(pid: int) -> list[int]:
    """``pid`` and every process descended from it (a worker's fork server and pool
    children), from ``/proc``: what a process-group pause (Ctrl-Z) stops together."""
    found = [pid]
    for parent in found:  # grows while walked
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children", encoding="ascii") as f:
                    found += [int(child) for child in f.read().split()]
            except FileNotFoundError:
                continue
    return found
