"""A kernel timer that SIGKILLs this process at a CLOCK_MONOTONIC deadline: how a
process-pool child keeps its job's lease even while it is stopped.

Why the kernel: a watchdog thread cannot win every race. When a child's whole process
group is stopped past its lease (Ctrl-Z, a cgroup freeze, ``kill -STOP -PGID``) and then
continued, its handler thread and its watchdog thread wake together, and the handler
often gets the GIL first and takes one more step (a write, a payment) while the job's
next holder already runs it. A POSIX timer (``timer_create`` on ``CLOCK_MONOTONIC``,
delivering SIGKILL) fires in the kernel at the deadline: SIGKILL ends a stopped process
at once, and a running one before it returns to user space, so no Python code of the
child runs past the deadline, whatever its threads are doing.

Through ``ctypes``: the standard library has no POSIX timers (``signal.setitimer`` only
raises SIGALRM, which a handler may catch or use itself), and no maintained package wraps
them. Where the call is missing (macOS) ``create`` returns None and the child's watchdog
thread is all there is (README, "Limits").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import signal
import time

_SIGEV_SIGNAL = 0  # deliver a signal when the timer fires
_TIMER_ABSTIME = 1  # the expiry is an absolute time on the timer's clock


class _SigEvent(ctypes.Structure):
    # Linux's struct sigevent: 64 bytes (the union after the first three fields is padding
    # for what SIGEV_SIGNAL does not use).
    _fields_ = [
        ("sigev_value", ctypes.c_void_p),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("_pad", ctypes.c_int * 12),
    ]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def _libc() -> ctypes.CDLL | None:
    """The C library with ``timer_create`` (glibc 2.34 and later have it; older ones in
    librt), or None."""
    for name in (None, ctypes.util.find_library("rt")):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            lib.timer_create  # noqa: B018 - raises AttributeError where it is missing
            lib.timer_settime  # noqa: B018
        except (OSError, AttributeError):
            continue
        return lib
    return None


class KillTimer:
    """One timer of this process; ``arm(deadline)`` and ``disarm()`` may be called from any
    of its threads (callers serialise them)."""

    def __init__(self, lib: ctypes.CDLL, timer_id: ctypes.c_void_p) -> None:
        self._lib = lib
        self._id = timer_id

    @classmethod
    def create(cls) -> KillTimer | None:
        """A disarmed timer, or None where the system has no POSIX timers."""
        lib = _libc()
        if lib is None:
            return None
        event = _SigEvent()
        event.sigev_notify = _SIGEV_SIGNAL
        event.sigev_signo = signal.SIGKILL
        timer_id = ctypes.c_void_p()
        if lib.timer_create(time.CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer_id)):
            return None
        return cls(lib, timer_id)

    def arm(self, deadline: float) -> None:
        """SIGKILL this process at ``deadline`` (``time.monotonic()``'s clock); an infinite
        deadline disarms. Re-arming replaces the previous deadline."""
        spec = _ITimerSpec()
        if math.isfinite(deadline):
            # A deadline already past (or 0) still fires: at once, at the smallest time.
            seconds = max(deadline, 1e-9)
            spec.it_value.tv_sec = int(seconds)
            spec.it_value.tv_nsec = max(1, int((seconds - int(seconds)) * 1e9))
        self._settime(spec)

    def disarm(self) -> None:
        self._settime(_ITimerSpec())  # a zero expiry disarms

    def _settime(self, spec: _ITimerSpec) -> None:
        if self._lib.timer_settime(self._id, _TIMER_ABSTIME, ctypes.byref(spec), None):
            raise OSError(ctypes.get_errno(), "timer_settime failed")
