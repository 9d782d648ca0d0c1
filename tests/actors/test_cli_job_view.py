"""``corral job ID`` as a person reads it (``actors.cli.views.render_job``): the lines it
always printed, then the job's workflow and step and its arguments as JSON, cut to one
line each; arguments too large for the view are named by their size; text from users is
printed as given, never read as Rich markup."""

from __future__ import annotations

import msgspec
from rich.console import Console

from actors.cli.views import ARGS_CHARS, render_job
from transport import protocol as wire

pack = msgspec.msgpack.encode


def shown(view: wire.JobView) -> list[str]:
    console = Console(record=True, width=300, color_system=None)
    render_job(view, console)
    return [line.rstrip() for line in console.export_text().splitlines()]


def view(**fields: object) -> wire.JobView:
    base = wire.JobView(
        7, "billing.charge", "SUCCEEDED", 0, "default", 1, 3, 1, "w1", [], "order-7",
        1.0, 2.0, 3.0, msgspec.Raw(pack("paid")),
    )  # fmt: skip
    return msgspec.structs.replace(base, **fields)


def test_a_job_shows_its_workflow_and_arguments_after_the_lines_it_always_had() -> None:
    args, kwargs = pack(["inv-1", 2.5, None, "[bold]x[/]"]), pack({"to": "ünï"})
    lines = shown(
        view(
            workflow_id=3,
            step="fetch",
            args=msgspec.Raw(args),
            kwargs=msgspec.Raw(kwargs),
            payload_bytes=len(args) + len(kwargs),
        )
    )
    assert lines[:4] == [
        "job 7 billing.charge: SUCCEEDED",
        "  queue default, priority 0, attempts 1 of 4, fencing token 1",
        "  idempotency key order-7",
        "  workflow 3, step fetch",
    ]
    assert lines[4:7] == [
        '  args ["inv-1", 2.5, null, "[bold]x[/]"]',
        '  kwargs {"to": "ünï"}',
        "  result 'paid'",
    ]


def test_long_arguments_are_cut_and_withheld_ones_named_by_their_size() -> None:
    long = pack(["x" * 1000])
    lines = shown(view(args=msgspec.Raw(long), payload_bytes=len(long) + 1))
    [args] = [line for line in lines if line.startswith("  args ")]
    assert len(args) == ARGS_CHARS + 2
    assert args.endswith("x…")
    assert not any(line.startswith("  kwargs") for line in lines), "none given: no line"
    size = wire.MAX_SHOWN_PAYLOAD + 10
    lines = shown(view(payload_bytes=size))
    assert f"  arguments {size:,} bytes: too large to show" in lines


def test_an_older_schedulers_view_without_arguments_prints_what_it_always_did() -> None:
    lines = shown(view())
    assert lines[:3] == [
        "job 7 billing.charge: SUCCEEDED",
        "  queue default, priority 0, attempts 1 of 4, fencing token 1",
        "  idempotency key order-7",
    ]
    assert lines[3] == "  result 'paid'"


def test_attempts_beyond_the_count_say_why_they_do_not_count() -> None:
    """A re-queued dead letter shows "attempts 1 of 2" above three attempts: the line says
    why instead of reading as a miscount."""
    history = [
        wire.AttemptView(t, "w1", 1.0, 2.0, outcome, "boom" if outcome == "failed" else None)
        for t, outcome in ((1, "failed"), (2, "failed"), (3, "succeeded"))
    ]
    lines = shown(view(max_retries=1, history=history))
    assert lines[1] == (
        "  queue default, priority 0, attempts 1 of 2 (3 in its history: a re-queue starts a "
        "fresh count, and an attempt a scheduler restart interrupted counts for nothing), "
        "fencing token 1"
    )
    assert shown(view(history=history[:1]))[1] == (
        "  queue default, priority 0, attempts 1 of 4, fencing token 1"
    )
