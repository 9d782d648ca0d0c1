"""Every public error survives pickling with its type, message and fields: a user's
``client.result()`` in a multiprocessing pool, or any framework that ships exceptions
between processes, gets corral's error back instead of a failure to rebuild it (their
``__init__`` takes other arguments than the message they keep in ``args``)."""

from __future__ import annotations

import pickle

import pytest

import actors
from actors import errors
from actors.scheduler.store.sqlite_file import StoreLocked
from transport import errors as transport_errors

SAMPLES: list[BaseException] = [
    errors.CorralError("any"),
    transport_errors.TransportError("any"),
    errors.IllegalTransition(7, "QUEUED", "SUCCEEDED"),
    errors.ActorCrashed("scheduler", ValueError("boom")),
    errors.ConfigError("--lease", "abc", "a number of seconds > 0"),
    errors.StoreError("/var/corral.db", "cannot write"),
    errors.StoreFull("/var/corral.db", "disk full"),
    errors.StoreLost("/var/corral.db", "deleted"),
    errors.StoreDamaged("/var/corral.db", "damaged"),
    StoreLocked("/var/corral.db"),
    errors.StoreInconsistent("compare-and-swap matched 0 of 1"),
    errors.NotLeaderAnymore("postgresql://h/corral", 7, "term 7 was taken by term 8"),
    errors.SchedulerUnreachable("tcp://h:5555", 5.0),
    errors.SchedulerUnreachable("tcp://a:5555,tcp://b:5555", 5.0, "tcp://a:5555"),
    errors.RequestTimedOut("tcp://h:5555", 60.0, "request 3 (Wait)", "no reply"),
    errors.RequestLost("submission in flight"),
    errors.RequestRefused("invalid", "bad"),
    errors.JobFailed(3, "FAILED", "Traceback ..."),
    errors.WaitTimeout([1, 2, 3], 1.5),
    errors.WorkflowRejected("cycle", "a -> b -> a"),
    errors.UnknownStrategy("nope", ["fifo", "priority"]),
    errors.PoolStartFailed("child exited"),
    errors.HandlerFailed("Traceback ...", retry=False),
    transport_errors.BadFrame("too_large", "frame of 9 MiB", 4),
    transport_errors.UnknownAddress("foo://x"),
    transport_errors.AddressInUse("tcp://127.0.0.1:5555", "in use"),
    transport_errors.PeerGone("gone"),
    transport_errors.Closed("closed"),
]


def test_every_public_error_class_has_a_sample() -> None:
    public = {
        name
        for name in actors.__all__
        if isinstance(getattr(actors, name), type)
        and issubclass(getattr(actors, name), BaseException)
    }
    assert public <= {type(e).__name__ for e in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling_with_its_message_and_fields(error: BaseException) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.args == error.args
    fields = {k: v for k, v in vars(error).items() if not isinstance(v, BaseException)}
    assert {k: v for k, v in vars(again).items() if k in fields} == fields
