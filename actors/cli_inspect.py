"""Inspection and control commands: status, job, cancel, the dead-letter queue, dag."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from actors.cli_common import EXIT_FAILED, fail, print_json, run_async, with_client


def cmd_status(args: argparse.Namespace) -> None:
    from actors.client import AsyncClient

    async def go() -> Any:
        async with AsyncClient(args.connect) as client:
            return await client.status()

    status = run_async(go())
    if args.json:
        print_json(status)
        return
    from actors.views import render_status

    render_status(status)


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
