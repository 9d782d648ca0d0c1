"""The pool child's kernel timer (``actors.worker.kill_timer``) on real processes: it SIGKILLs
its process at the deadline, even while the process is stopped; disarmed or moved on, it
does not."""

from __future__ import annotations

import signal
import subprocess
import sys

SCRIPT = """
import sys, time
from actors.worker.kill_timer import KillTimer
timer = KillTimer.create()
assert timer is not None
first = time.monotonic() + 0.3
timer.arm(first)
mode = sys.argv[1]
if mode == "disarm":
    timer.disarm()
elif mode == "move":
    timer.arm(first + 30)
print("armed", flush=True)
while time.monotonic() < first + 0.5:
    time.sleep(0.01)
print("past", flush=True)
"""


def child(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True)


def test_it_kills_its_process_at_the_deadline() -> None:
    proc = child("arm")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert out.split() == ["armed"]


def test_disarmed_or_moved_on_it_does_not() -> None:
    for mode in ("disarm", "move"):
        proc = child(mode)
        out, _ = proc.communicate(timeout=30)
        assert (proc.returncode, out.split()) == (0, ["armed", "past"]), mode


def test_it_kills_a_stopped_process_without_waiting_for_it_to_resume() -> None:
    proc = child("arm")
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline().strip() == "armed"
        proc.send_signal(signal.SIGSTOP)  # never continued
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert proc.stdout.read() == ""
