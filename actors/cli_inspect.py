"""Inspection and control commands: status, job, cancel, the dead-letter queue, dag."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from actors.cli_common import EXIT_FAILED, fail, print_json, run_async, with_client


def cmd_status(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.live import Live

    from actors.client import AsyncClient
    from actors.views import render_status, status_renderable

    console = Console()
    live = not (args.once or args.json) and console.is_terminal

    async def go() -> Any:
        async with AsyncClient(args.connect) as client:
            if not live:
                return await client.status()
            with Live(
                status_renderable(await client.status(), args.connect),
                console=console,
                refresh_per_second=4,
                screen=False,
            ) as view:
                while True:
                    await asyncio.sleep(args.interval)
                    view.update(status_renderable(await client.status(), args.connect))

    try:
        status = run_async(go())
    except KeyboardInterrupt:
        return
    if args.json:
        print_json(status)
    else:
        render_status(status, console, args.connect)


def cmd_workers(args: argparse.Namespace) -> None:
    from actors.views import render_workers

    status = with_client(args, lambda c: c.status())
    if args.json:
        print_json(status.workers)
    else:
        render_workers(status)


def cmd_jobs(args: argparse.Namespace) -> None:
    from actors.views import render_jobs

    views = with_client(args, lambda c: c.jobs(args.state, args.queue, args.limit))
    if args.json:
        print_json(views)
    else:
        what = " ".join(filter(None, [args.state, f"queue {args.queue}" if args.queue else ""]))
        render_jobs(
            views, title=f"{len(views)} job(s), newest first" + (f": {what}" if what else "")
        )


def cmd_watch(args: argparse.Namespace) -> None:
    from actors.client import AsyncClient
    from actors.views import event_line

    async def go() -> None:
        async with AsyncClient(args.connect) as client:
            async for event in client.watch(args.job):
                print(print_json_line(event) if args.json else event_line(event), flush=True)
                if args.job and event.kind == "job" and event.status in _FINAL:
                    return

    try:
        run_async(go())
    except KeyboardInterrupt:
        return


_FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "UPSTREAM_FAILED"}


def print_json_line(value: Any) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()


def cmd_cancel(args: argparse.Namespace) -> None:
    statuses = with_client(args, lambda c: c.cancel(args.ids))
    missing = 0
    for job_id in args.ids:
        print(job_id, statuses[job_id])
        missing += statuses[job_id] == "NOT_FOUND"
    raise SystemExit(EXIT_FAILED if missing else 0)


def cmd_job(args: argparse.Namespace) -> None:
    from actors.views import render_job

    view = with_client(args, lambda c: c.job(args.id))
    if view is None:
        fail(f"no job {args.id}")
    if args.json:
        print_json(view)
    else:
        render_job(view)


def cmd_dlq(args: argparse.Namespace) -> None:
    from actors.views import render_job, render_jobs

    if args.dlq_command == "list":
        views = with_client(args, lambda c: c.jobs("FAILED", args.queue, args.limit))
        if args.json:
            print_json(views)
        else:
            render_jobs(views, title=f"dead-letter queue: {len(views)} FAILED job(s) shown")
    elif args.dlq_command == "show":
        view = with_client(args, lambda c: c.job(args.id))
        if view is None:
            fail(f"no job {args.id}")
        if view.status != "FAILED":
            fail(f"job {args.id} is {view.status}, not in the dead-letter queue (FAILED)")
        if args.json:
            print_json(view)
        else:
            render_job(view)
    else:
        if not args.ids and not args.all:
            fail("name job IDs to re-queue, or pass --all")
        reply = with_client(args, lambda c: c.requeue(args.ids, all_failed=args.all))
        print(
            f"re-queued {len(reply.job_ids)} job(s)"
            + (": " + " ".join(map(str, reply.job_ids)) if reply.job_ids else "")
        )
        for job_id, why in reply.skipped:
            print(f"job {job_id} not re-queued: {why}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED if reply.skipped and not reply.job_ids else 0)


def cmd_dag(args: argparse.Namespace) -> None:
    from actors.views import render_workflow, workflow_dot, workflow_mermaid

    view = with_client(args, lambda c: c.workflow(args.id))
    if view is None:
        fail(f"no workflow {args.id} (`corral submit --file` prints a workflow's id)")
    if args.format == "mermaid":
        print(workflow_mermaid(view))
    elif args.format == "dot":
        print(workflow_dot(view))
    elif args.format == "json":
        print_json(view)
    else:
        render_workflow(view)
