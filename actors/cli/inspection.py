"""Inspection and control commands: status, job, cancel, the dead-letter queue, dag."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

from actors.cli.common import (
    EXIT_FAILED,
    client_of,
    fail,
    print_json,
    run_async,
    with_client,
)
from actors.cli.output import quiet_on_closed_stdout
from actors.errors import CorralError, RequestRefused, SchedulerUnreachable
from actors.keys import client_keys
from transport import ClientKeys
from transport import protocol as wire
from transport.errors import TransportError

# A refresh of the live view waits at most 2 x its interval for the scheduler, and never
# less than this: a reply takes milliseconds, a loaded machine can add a second.
MIN_REFRESH_TIMEOUT_S = 2.0
# How long `corral status` waits for the first answer (the SDK's connect timeout).
STATUS_CONNECT_TIMEOUT_S = 5.0


async def standby_answer(
    address: str, timeout: float, keys: ClientKeys | None = None
) -> wire.NotLeader | None:
    """A hello to ``address``: the NotLeader a standby scheduler answers, or None (the
    leader welcomed us). Raises SchedulerUnreachable when nothing answers in time."""
    from transport import connect

    link = connect(address, keys)
    try:
        link.send(wire.encode(wire.ClientHello(wire.PROTOCOL_VERSION)))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    frames = await link.recv_batch()
            except TimeoutError:
                break
            for frame in frames:
                with contextlib.suppress(TransportError):
                    reply = wire.decode_reply(frame)
                    if isinstance(reply, wire.NotLeader):
                        return reply
                    if isinstance(reply, wire.Welcome):
                        return None
                    if isinstance(reply, wire.ErrorReply) and reply.code == "forbidden":
                        raise RequestRefused(reply.code, reply.message)  # our key's role
        raise SchedulerUnreachable(address, timeout)
    finally:
        await link.close()


@quiet_on_closed_stdout
def cmd_status(args: argparse.Namespace) -> None:
    from rich.live import Live

    from actors.cli.console import make_console
    from actors.cli.views import (
        render_status,
        standby_line,
        status_renderable,
        unreachable_renderable,
    )

    if "," not in args.connect:  # one address: say so if it is a standby (PostgreSQL)
        standby = run_async(
            standby_answer(
                args.connect, STATUS_CONNECT_TIMEOUT_S, client_keys(args.key, args.server_key)
            )
        )
        if standby is not None:
            if args.json:
                role = {"standby": args.connect, "leader": standby.leader, "term": standby.term}
                print_json(role)
            else:
                print(standby_line(args.connect, standby))
            return
    out = make_console()
    live = not (args.once or args.json) and out.is_terminal
    # Each refresh waits at most this long: a dead scheduler is shown as such within a
    # couple of refreshes instead of leaving the last numbers on screen as if current.
    patience = max(MIN_REFRESH_TIMEOUT_S, 2 * args.interval)

    async def go() -> Any:
        async with client_of(args) as client:
            if not live:
                return await client.status()
            status = await client.status()
            answered = time.monotonic()
            with Live(
                status_renderable(status, args.connect),
                console=out,
                refresh_per_second=4,
                screen=False,
            ) as view:
                while True:
                    await asyncio.sleep(args.interval)
                    try:
                        async with asyncio.timeout(patience):
                            status = await client.status()
                    except (TimeoutError, CorralError, TransportError) as exc:
                        silent = time.monotonic() - answered
                        view.update(unreachable_renderable(status, args.connect, silent, exc))
                        continue
                    answered = time.monotonic()
                    view.update(status_renderable(status, args.connect))

    try:
        status = run_async(go())
    except KeyboardInterrupt:
        return
    if args.json:
        print_json(status)
    else:
        render_status(status, out, args.connect)


@quiet_on_closed_stdout
def cmd_workers(args: argparse.Namespace) -> None:
    from actors.cli.views import render_workers

    status = with_client(args, lambda c: c.status())
    if args.json:
        print_json(status.workers)
    else:
        render_workers(status)


@quiet_on_closed_stdout
def cmd_jobs(args: argparse.Namespace) -> None:
    from actors.cli.views import render_jobs

    views = with_client(
        args,
        lambda c: c.jobs(
            args.state,
            args.queue,
            args.limit,
            task=args.task,
            key=args.idempotency_key,
            created_after=args.since,
            created_before=args.until,
            before=args.before,
        ),
    )
    if args.json:
        print_json(views)
    else:
        what = " ".join(
            filter(
                None,
                [
                    args.state,
                    f"queue {args.queue}" if args.queue else "",
                    f"task {args.task}" if args.task else "",
                    f"key {args.idempotency_key}" if args.idempotency_key else "",
                ],
            )
        )
        render_jobs(
            views, title=f"{len(views)} job(s), newest first" + (f": {what}" if what else "")
        )


@quiet_on_closed_stdout
def cmd_watch(args: argparse.Namespace) -> None:
    from actors.cli.views import event_line, final_event

    def show(event: wire.Event) -> None:
        print(print_json_line(event) if args.json else event_line(event), flush=True)

    async def go() -> int:
        async with client_of(args) as client:
            subscribed = asyncio.Event()
            events = client.watch(args.job, subscribed=subscribed)
            following: asyncio.Future[wire.Event] = asyncio.ensure_future(anext(events))
            try:
                await subscribed.wait()
                if args.job is not None:
                    # Asked after subscribing: a job that ends from now on is streamed,
                    # one that had already ended is found here.
                    view = await client.job(args.job)
                    if view is None:
                        print(f"corral: error: no job {args.job}", file=sys.stderr)
                        return EXIT_FAILED
                    if view.status in _FINAL:
                        show(final_event(view))
                        return 0 if view.status == "SUCCEEDED" else EXIT_FAILED
                while True:
                    event = await following
                    show(event)
                    if args.job and event.kind == "job" and event.status in _FINAL:
                        return 0 if event.status == "SUCCEEDED" else EXIT_FAILED
                    following = asyncio.ensure_future(anext(events))
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
                await events.aclose()

    try:
        code = run_async(go())
    except KeyboardInterrupt:
        code = 130  # interrupted: not "the job succeeded" (a watched job's exit 0)
    raise SystemExit(code)


_FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "UPSTREAM_FAILED"}


def print_json_line(value: Any) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()


@quiet_on_closed_stdout
def cmd_cancel(args: argparse.Namespace) -> None:
    statuses = with_client(args, lambda c: c.cancel(args.ids))
    missing = 0
    for job_id in args.ids:
        print(job_id, statuses[job_id])
        missing += statuses[job_id] == "NOT_FOUND"
    raise SystemExit(EXIT_FAILED if missing else 0)


@quiet_on_closed_stdout
def cmd_job(args: argparse.Namespace) -> None:
    from actors.cli.views import render_job

    view = with_client(args, lambda c: c.job(args.id))
    if view is None:
        fail(f"no job {args.id}")
    if args.json:
        print_json(view)
    else:
        render_job(view)


@quiet_on_closed_stdout
def cmd_dlq(args: argparse.Namespace) -> None:
    from actors.cli.views import render_job, render_jobs

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


@quiet_on_closed_stdout
def cmd_dag(args: argparse.Namespace) -> None:
    from actors.cli.views import render_workflow, workflow_dot, workflow_mermaid

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
