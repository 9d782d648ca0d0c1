"""``corral schedule``: add, list, pause, resume and remove schedules (issue 17).

``add`` takes ``corral submit``'s job options and checks the whole schedule before it
connects (a bad cron expression, time zone, interval or option exits 2 with one line,
nothing sent); what only the scheduler knows (an unknown name, a name taken by another
spec, a key without the admin role) exits 1 with its one line. Times are printed in UTC.
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable
from typing import Any

from actors.cli.common import print_json, with_client
from actors.cli.submit import _spec_from_fields, usage
from actors.cli.times import parse_duration
from actors.errors import RequestRefused

JOB_OPTIONS = ("priority", "queue", "max_retries", "timeout", "backoff")
COLUMNS = ("NAME", "SPEC", "TZ", "NEXT FIRE", "LAST FIRE", "LAST JOB", "STATE", "PAUSED", "SKIPPED")


def when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _schedule_from_args(args: argparse.Namespace) -> Any:
    from actors.client.schedules import schedule_spec

    fields: dict[str, Any] = {"task": args.task}
    if args.args_json is not None:
        try:
            value = json.loads(args.args_json)
        except json.JSONDecodeError as exc:
            usage(f"ARGS_JSON is not valid JSON: {exc.msg} (example: '[1, 2]' or '{{\"x\": 1}}')")
        if not isinstance(value, list | dict):
            usage("ARGS_JSON must be a JSON array (positional args) or object (keyword args)")
        fields["args" if isinstance(value, list) else "kwargs"] = value
    for name in JOB_OPTIONS:
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    job = _spec_from_fields(fields, "job", flags=True)  # exits 2 naming a bad option
    every: float | None = None
    if args.every is not None:
        try:
            every = parse_duration(args.every)
        except ValueError as exc:
            usage(f"--every: {exc}")
    if (args.cron is None) == (every is None):
        usage("give exactly one of --cron EXPR and --every DURATION")
    options = {name: getattr(job, name) for name in JOB_OPTIONS}
    try:
        return schedule_spec(
            args.name,
            job.task,
            fields.get("args", ()),
            fields.get("kwargs"),
            cron=args.cron,
            every=every,
            tz=args.tz,
            missed=args.missed,
            no_overlap=args.no_overlap,
            **options,
        )
    except RequestRefused as exc:
        usage(exc.message)


def cmd_schedule_add(args: argparse.Namespace) -> None:
    from transport import protocol as wire

    spec = _schedule_from_args(args)

    async def add(client: Any) -> tuple[Any, bool]:
        reply = await client._request(lambda rid: wire.AddSchedule(rid, spec))
        return reply.schedules[0], reply.existing

    view, existing = with_client(args, add)
    said = "exists already, unchanged" if existing else "added"
    print(
        f"schedule {view.name} {said}: {view.spec} ({view.tz}), task {view.task}, "
        f"next fire {when(view.next_fire)}"
    )


def cmd_schedule_list(args: argparse.Namespace) -> None:
    views = with_client(args, lambda client: client.schedules())
    if args.json:
        print_json(views)
        return
    if not views:
        print("no schedules (`corral schedule add` adds one)")
        return
    rows = [COLUMNS] + [
        (
            v.name,
            v.spec,
            v.tz,
            when(v.next_fire),
            when(v.last_fire),
            str(v.last_job_id) if v.last_job_id is not None else "-",
            v.last_job_state or "-",
            "yes" if v.paused else "no",
            str(v.skipped),
        )
        for v in views
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _change(action: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        method = f"{action}_schedule"
        view = with_client(args, lambda client: getattr(client, method)(args.name))
        match action:
            case "pause":
                print(f"schedule {view.name} paused")
            case "resume":
                print(f"schedule {view.name} resumed: next fire {when(view.next_fire)}")
            case _:
                print(f"schedule {view.name} removed (the jobs it created stay)")

    return run


def add_schedule_parser(
    add: Callable[..., argparse.ArgumentParser],
    connect_flag: Callable[[argparse.ArgumentParser], None],
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """The ``schedule`` command and its subcommands (called by ``main.build_parser``)."""
    p = add("schedule", cmd_schedule_list, "schedules: jobs created at cron times or intervals")
    sub = p.add_subparsers(dest="schedule_command", required=True, parser_class=parser_class)

    q = sub.add_parser("add", help="add a schedule (the admin role, with keys)")
    q.set_defaults(fn=cmd_schedule_add)
    q.add_argument("name", metavar="NAME", help="letters, digits, _ . - (unique)")
    q.add_argument("task", metavar="TASK", help="registered task name")
    q.add_argument("args_json", nargs="?", metavar="ARGS_JSON", help="as for corral submit")
    timing = q.add_mutually_exclusive_group()
    timing.add_argument(
        "--cron",
        metavar="EXPR",
        help='a cron expression: 5 fields ("30 2 * * *") or 6 with seconds first',
    )
    timing.add_argument(
        "--every", metavar="DURATION", help="a whole number of seconds: 10s, 5m, 1h, 1d"
    )
    q.add_argument(
        "--tz", default="UTC", metavar="ZONE", help="the cron expression's time zone (UTC)"
    )
    q.add_argument(
        "--missed",
        choices=["latest", "all", "skip"],
        default="latest",
        help="fire times missed while no scheduler ran: run the latest once (default), "
        "all of them (the newest 100 at most), or skip them",
    )
    q.add_argument(
        "--no-overlap",
        action="store_true",
        help="skip (and count) a fire time while the previous one's job has not ended",
    )
    q.add_argument("--priority", type=int, default=None, help="as for corral submit")
    q.add_argument("--queue", default=None, help="as for corral submit")
    q.add_argument("--max-retries", type=int, default=None, metavar="N")
    q.add_argument("--timeout", type=float, default=None, metavar="S")
    q.add_argument(
        "--backoff", type=float, nargs=3, default=None, metavar=("BASE", "FACTOR", "CAP")
    )
    connect_flag(q)

    q = sub.add_parser("list", help="every schedule: spec, next and last fire, last job")
    q.set_defaults(fn=cmd_schedule_list)
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(q)
    for action, text in (
        ("pause", "stop firing until resumed"),
        ("resume", "fire again, from the next fire time after now"),
        ("remove", "delete a schedule (the jobs it created stay)"),
    ):
        q = sub.add_parser(action, help=text)
        q.set_defaults(fn=_change(action))
        q.add_argument("name", metavar="NAME")
        connect_flag(q)
