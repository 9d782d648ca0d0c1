"""The gateway's refusals: every bad frame is counted and answered, but logged at most once a
second; frames from peers that have not said hello (the normal aftermath of a restart) are
neither bad frames nor warnings, and a worker's queue of them gets one hello_first."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.scheduler.gateway import Gateway
from actors.scheduler.ratelog import RateLimitedLog
from tests.actors.test_gateway_order import Recording
from tests.helpers.recorder import Recorder
from transport import protocol as wire


def gateway() -> tuple[Gateway, Recording, list[tuple[str, Any]]]:
    transport = Recording()
    gw = Gateway(transport, 1.0, "test")
    log: list[tuple[str, Any]] = []
    gw.scheduler = Recorder("scheduler", log)
    gw.dispatcher = Recorder("dispatcher", log)
    gw.heartbeat = Recorder("heartbeat", log)
    gw.events = Recorder("events", log)
    return gw, transport, log


def test_thousands_of_frames_nested_too_deeply_make_a_handful_of_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, transport, _ = gateway()
    nested = b"\x93\xa6Submit\x01\x91\x92\xa1t" + b"\x91" * 50_000 + b"\xc0"
    with caplog.at_level(logging.DEBUG, logger="corral.gateway"):
        for _ in range(5000):
            gw._route(b"peer", nested, [])
    assert gw.bad_frames == 5000
    assert len(transport.sent) == 5000, "each still gets its error reply"
    assert {m.code for _, m in transport.sent} == {"bad_frame"}  # type: ignore[attr-defined]
    lines = [r for r in caplog.records if r.name == "corral.gateway"]
    assert 1 <= len(lines) <= 5
    assert not any(r.exc_info for r in lines), "no traceback per frame"


def test_a_restarted_schedulers_backlog_gets_one_hello_first_and_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, transport, log = gateway()
    backlog = [wire.Heartbeat([(1, 1)], float(i), 3) for i in range(20)]
    backlog += [wire.Results([wire.JobResult(1, 1, True)]), wire.Progress([])]
    with caplog.at_level(logging.INFO, logger="corral.gateway"):
        for message in backlog:
            gw._route(b"worker", wire.encode(message), [])
        gw._route(b"client", wire.encode(wire.GetStatus(7)), [])
        gw._route(b"client", wire.encode(wire.GetStatus(8)), [])
    replies = [(peer, m.code, m.request_id) for peer, m in transport.sent]  # type: ignore[attr-defined]
    assert replies == [
        (b"worker", "hello_first", 0),
        (b"client", "hello_first", 7),  # a client's request waits for its reply: each one
        (b"client", "hello_first", 8),
    ]
    assert gw.bad_frames == 0
    assert not [r for r in caplog.records if r.name == "corral.gateway"]
    assert log == [], "nothing reached the other actors"
    gw._route(b"worker", wire.encode(wire.WorkerHello(1, "w", 1)), [])
    assert [type(m.message) for _, m in log] == [wire.WorkerHello]


def test_a_rate_limited_log_says_how_many_lines_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        assert limited("bad %s", "one")
        for _ in range(99):
            assert not limited("bad %s", "more")
        now[0] = 1.0
        assert limited("bad %s", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "bad one",
        "bad later (and 99 more like it since the last report)",
    ]
