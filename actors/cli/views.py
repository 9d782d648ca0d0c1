"""Terminal views of scheduler state, rendered with rich."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from actors.cli.console import make_console
from actors.lifecycle import JobState
from transport import protocol as wire


def status_renderable(status: wire.StatusView, address: str = "") -> Group:
    """Everything `corral status` shows, as one rich renderable (live or once)."""
    header = Text.assemble(
        ("corral ", "bold"),
        (address + "  " if address else ""),
        f"strategy {status.strategy}  ·  {status.throughput_per_s:g} jobs/s succeeded "
        f"(last minute)  ·  {status.completed_last_minute} ended in the last minute  ·  ",
        (f"{status.dead_letters} dead letter(s)", "red" if status.dead_letters else ""),
    )
    if status.cluster is not None:
        header.append("\n")
        header.append(cluster_line(status.cluster))
    if status.security == "insecure":
        header.append("\n")
        header.append(
            "WARNING: this scheduler runs --insecure: anyone who reaches it can act as a "
            "worker or a client",
            "bold red",
        )
    jobs = Table(title="jobs by state", show_edge=False, title_justify="left")
    for state in JobState:
        jobs.add_column(state.value, justify="right")
    jobs.add_row(*(str(status.jobs.get(state.value, 0)) for state in JobState))
    queues = Table(title="ready queues", show_edge=False, title_justify="left")
    # "no worker": ready jobs whose task no connected worker on their queue has.
    for column in ("queue", "ready", "high (>0)", "normal (0)", "low (<0)", "no worker"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for name, q in sorted(status.queues.items()):
        waiting = str(q.waiting_for_worker) if q.waiting_for_worker else "0"
        queues.add_row(
            name,
            str(q.ready),
            str(q.high),
            str(q.normal),
            str(q.low),
            f"[yellow]{waiting}[/]" if q.waiting_for_worker else waiting,
        )
    if not status.queues:
        queues.add_row("(none yet)", "0", "0", "0", "0", "0")
    workers = Table(title="workers", show_edge=False, title_justify="left")
    for column in ("name", "health", "slots used", "queues", "last heartbeat"):
        workers.add_column(column)
    running = Table(title="running jobs", show_edge=False, title_justify="left")
    for column in ("worker", "job", "token", "progress", "message"):
        running.add_column(column)
    for w in sorted(status.workers, key=lambda w: w.name):
        colour = _HEALTH_COLOURS.get(w.state, "red")
        workers.add_row(
            w.name,
            f"[{colour}]{w.state}[/]",
            slots_used(w),
            ",".join(w.queues),
            f"{w.last_seen_s:.1f}s ago",
        )
        for job in w.jobs:
            bar: ProgressBar | str = "-"
            if job.progress is not None:
                bar = ProgressBar(total=1.0, completed=job.progress, width=20)
            running.add_row(w.name, str(job.job_id), str(job.token), bar, job.message)
    if not status.workers:
        workers.add_row("(none connected)", "", "", "", "")
    parts: list[Any] = [header, "", jobs, "", queues, "", workers]
    parts += limits_lines(status)
    if running.row_count:
        parts += ["", running]
    return Group(*parts)


def limits_lines(status: wire.StatusView) -> list[Any]:
    """Concurrency keys at their limit and rate limits with the jobs waiting on them."""
    lines: list[Any] = []
    for k in status.keys:
        lines.append(f"key {k.key}: {k.running}/{k.max_concurrent} running, {k.waiting} waiting")
    for x in status.limits:
        per = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(x.period, f"{x.period:g}s")
        lines.append(f"limit {x.name}: {x.count}/{per} burst {x.burst}, {x.waiting} waiting")
    return ["", *lines] if lines else []


_HEALTH_COLOURS = {"alive": "green", "suspect": "yellow", "draining": "cyan"}


def cluster_line(cluster: wire.ClusterView) -> Text:
    """Who leads, in which term, and the standbys (PostgreSQL with several schedulers)."""
    standbys = [s for s in cluster.schedulers if s.role == "standby"]
    listed = ", ".join(f"{s.address} (seen {s.seen_s:.1f}s ago)" for s in standbys)
    return Text.assemble(
        ("leader ", "bold"),
        f"{cluster.leader}, term {cluster.term}  ·  ",
        (f"{len(standbys)} standby(s)", "" if standbys else "yellow"),
        f": {listed}" if listed else " (nobody can take over if this scheduler fails)",
    )


def standby_line(address: str, answer: wire.NotLeader) -> str:
    """What `corral status` says of a standby scheduler."""
    if answer.leader:
        return (
            f"{address} is a standby scheduler; the leader is {answer.leader} "
            f"(term {answer.term}): corral status --connect {answer.leader}"
        )
    return (
        f"{address} is a standby scheduler; no leader right now (term {answer.term} ended, "
        "an election is on: a standby takes over within seconds)"
    )


def render_status(
    status: wire.StatusView, console: Console | None = None, address: str = ""
) -> None:
    (console or make_console()).print(status_renderable(status, address))


def slots_used(worker: wire.WorkerView) -> str:
    """A worker's leases held of its slots, and how many of those are for prefetched jobs:
    ``70/128 (64 prefetch)`` for ``--concurrency 64 --prefetch 64``."""
    used = f"{worker.running}/{worker.slots}"
    return f"{used} ({worker.prefetch} prefetch)" if worker.prefetch else used


def render_workers(status: wire.StatusView, console: Console | None = None) -> None:
    table = Table(title=f"{len(status.workers)} worker(s)", show_edge=False)
    for column in ("name", "health", "slots used", "queues", "last heartbeat", "running jobs"):
        table.add_column(column)
    for w in sorted(status.workers, key=lambda w: w.name):
        colour = _HEALTH_COLOURS.get(w.state, "red")
        jobs = ", ".join(str(j.job_id) for j in w.jobs) or "-"
        table.add_row(
            w.name,
            f"[{colour}]{w.state}[/]",
            slots_used(w),
            ",".join(w.queues),
            f"{w.last_seen_s:.1f}s ago",
            jobs,
        )
    (console or make_console()).print(table)


def event_line(event: wire.Event) -> str:
    """One event as a line of text, for `corral watch`."""
    at = time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at % 1 * 1000):03d}"
    if event.kind == "job":
        detail = f"job {event.job_id} {event.status}"
        if event.worker and event.status == "RUNNING":
            detail += f" on {event.worker} (token {event.token})"
        if event.message and event.status not in ("RUNNING", "QUEUED", "PENDING", "SUCCEEDED"):
            detail += f": {_first_line(event.message)}"
    elif event.kind == "progress":
        detail = f"job {event.job_id} {event.fraction:.0%} {event.message}".rstrip()
    elif event.kind == "worker":
        detail = f"worker {event.worker} {event.status}"
    else:
        detail = event.message
    seq = f"#{event.seq} " if event.seq else ""  # 0: a state read, not a streamed event
    return f"{at} {seq}{event.kind:8} {detail}"


def final_event(job: wire.JobView) -> wire.Event:
    """A finished job's last transition, as the event stream would have shown it."""
    return wire.Event(
        0,
        job.finished_at or job.created_at,
        "job",
        job.job_id,
        job.status,
        job.queue,
        job.worker or "",
        job.token,
        message=job.error or "",
    )


def unreachable_renderable(
    status: wire.StatusView, address: str, silent_s: float, cause: BaseException
) -> Group:
    """The live view while the scheduler does not answer: says so first, and shows the last
    numbers it gave only as such (they are not current)."""
    why = "" if isinstance(cause, TimeoutError) else f" ({_first_line(str(cause), 100)})"
    warning = Text.assemble(
        ("scheduler unreachable", "bold red"),
        f" at {address}: no answer for {silent_s:.0f}s{why}; retrying. ",
        ("The numbers below are the last it gave.", "dim"),
    )
    stale = status_renderable(status).renderables[2:]  # all but its header line
    return Group(warning, "", *stale)


# A job's arguments on its line in ``corral job``: cut here (--json shows them whole).
ARGS_CHARS = 200


def _argument_lines(job: wire.JobView) -> list[str]:
    """``args [...]`` and ``kwargs {...}`` (the latter only when given), as JSON, cut to
    ARGS_CHARS; one line saying their size when the view withheld them (too large)."""
    if not job.payload_bytes:  # an older scheduler's view, or a listing's: nothing to say
        return []
    if job.args == wire.NONE_RAW and job.payload_bytes > wire.MAX_SHOWN_PAYLOAD:
        return [f"arguments {job.payload_bytes:,} bytes: too large to show"]
    lines = [f"args {as_json(wire.unpack_for_view(job.args))}"]
    kwargs = wire.unpack_for_view(job.kwargs)
    if kwargs:
        lines.append(f"kwargs {as_json(kwargs)}")
    return [line if len(line) <= ARGS_CHARS else line[: ARGS_CHARS - 1] + "…" for line in lines]


def as_json(value: Any) -> str:
    """``value`` (a user's payload) as compact JSON; what JSON lacks (bytes) as its repr."""
    import json

    return json.dumps(value, default=repr, ensure_ascii=False)


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _first_line(text: str | None, width: int = 70) -> str:
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""  # a traceback's last line names the exception
    return last if len(last) <= width else last[: width - 1] + "…"


def render_jobs(
    jobs: list[wire.JobView], title: str = "jobs", console: Console | None = None
) -> None:
    table = Table(title=title, show_edge=False)
    for column in (
        "id",
        "task",
        "state",
        "queue",
        "prio",
        "attempts",
        "worker",
        "finished",
        "error",
    ):
        table.add_column(column)
    for j in jobs:
        table.add_row(
            str(j.job_id),
            j.task,
            j.status,
            j.queue,
            str(j.priority),
            f"{j.attempts}/{j.max_retries + 1}",
            j.worker or "-",
            _when(j.finished_at),
            _first_line(j.error),
        )
    (console or make_console()).print(table)


def render_job(job: wire.JobView, console: Console | None = None) -> None:
    console = console or make_console()
    console.print(f"[bold]job {job.job_id}[/] {job.task}: [bold]{job.status}[/]")
    recorded = len(job.history)
    uncounted = (
        f" ({recorded} in its history: a re-queue starts a fresh count, and an attempt a "
        "scheduler restart interrupted counts for nothing)"
        if recorded > job.attempts
        else ""
    )
    console.print(
        f"  queue {job.queue}, priority {job.priority}, attempts {job.attempts} "
        f"of {job.max_retries + 1}{uncounted}, fencing token {job.token}"
    )
    if job.depends_on:
        console.print(f"  depends on {', '.join(map(str, job.depends_on))}")
    if job.idempotency_key:
        console.print(f"  idempotency key {job.idempotency_key}")
    if job.workflow_id is not None:
        console.print(f"  workflow {job.workflow_id}, step {escape(job.step or '-')}")
    for line in _argument_lines(job):
        console.print(f"  {escape(line)}")
    if job.not_before:
        why = "to retry" if job.attempts else "to start"
        console.print(
            f"  waits {why} until {_utc(job.not_before)} (in {job.not_before - time.time():.1f} s)"
        )
    if job.status == "SUCCEEDED":
        console.print(f"  result {wire.unpack_for_view(job.result)!r}")
    table = Table(title="attempts", show_edge=False)
    for column in ("token", "worker", "started", "ended", "outcome", "error"):
        table.add_column(column)
    for a in job.history:
        table.add_row(
            str(a.token),
            a.worker or "-",
            _when(a.started_at),
            _when(a.finished_at),
            a.outcome,
            _first_line(a.error),
        )
    console.print(table)
    failed = [a for a in job.history if a.error]
    for a in failed:
        console.print(f"\n[bold]attempt with token {a.token}[/] ({a.outcome}):\n{a.error.rstrip()}")  # type: ignore[union-attr]


_STATE_COLOURS = {
    "SUCCEEDED": "green",
    "RUNNING": "cyan",
    "QUEUED": "blue",
    "PENDING": "white",
    "FAILED": "red",
    "UPSTREAM_FAILED": "magenta",
    "CANCELLED": "yellow",
}


def render_workflow(workflow: wire.WorkflowView, console: Console | None = None) -> None:
    counts: dict[str, int] = {}
    for step in workflow.steps:
        counts[step.status] = counts.get(step.status, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    table = Table(
        title=f"workflow {workflow.workflow_id} {workflow.name}: {summary}", show_edge=False
    )
    for column in ("step", "job", "state", "after", "task", "prio", "attempts", "error"):
        table.add_column(column)
    for step in workflow.steps:
        colour = _STATE_COLOURS.get(step.status, "white")
        table.add_row(
            step.name,
            str(step.job_id),
            f"[{colour}]{step.status}[/]",
            ", ".join(step.after) or "-",
            step.task,
            str(step.priority),
            str(step.attempts),
            _first_line(step.error, 50),
        )
    (console or make_console()).print(table)


def _node(step: wire.StepView) -> str:
    return f"s{step.job_id}"


def mermaid_text(text: str) -> str:
    """``text`` safe inside a Mermaid ``["..."]`` label: quotes and markup characters as
    Mermaid entity codes (``#quot;``, ``#35;`` ...), line breaks as ``<br/>``."""
    text = text.replace("#", "#35;")  # first: the entities below start with '#'
    for char, entity in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("&", "#amp;")):
        text = text.replace(char, entity)
    for char, entity in (("`", "#96;"), ("[", "#91;"), ("]", "#93;"), ("|", "#124;")):
        text = text.replace(char, entity)
    return "<br/>".join(" ".join(line.split()) for line in text.splitlines() or [""])


def dot_text(text: str) -> str:
    """``text`` safe inside a Graphviz double-quoted string: backslashes and quotes escaped,
    line breaks as ``\\n``."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return "\\n".join(text.splitlines() or [""])


def workflow_mermaid(workflow: wire.WorkflowView) -> str:
    """The workflow as a Mermaid flowchart (paste into any Mermaid renderer)."""
    lines = ["flowchart TD"]
    by_name = {s.name: s for s in workflow.steps}
    for step in workflow.steps:
        label = f"{mermaid_text(step.name)}<br/>{step.status}"
        lines.append(f'    {_node(step)}["{label}"]:::{step.status.lower()}')
    for step in workflow.steps:
        for before in step.after:
            if before in by_name:
                lines.append(f"    {_node(by_name[before])} --> {_node(step)}")
    for state, colour in _STATE_COLOURS.items():
        lines.append(f"    classDef {state.lower()} stroke:{colour},stroke-width:2px")
    return "\n".join(lines)


def workflow_dot(workflow: wire.WorkflowView) -> str:
    """The workflow as Graphviz dot (``corral dag ID --format dot | dot -Tpng > dag.png``)."""
    lines = [f'digraph "workflow {workflow.workflow_id}" {{', "    rankdir=LR;"]
    by_name = {s.name: s for s in workflow.steps}
    for step in workflow.steps:
        colour = _STATE_COLOURS.get(step.status, "black")
        label = f"{dot_text(step.name)}\\n{step.status}"
        lines.append(f'    {_node(step)} [label="{label}", color={colour}];')
    for step in workflow.steps:
        for before in step.after:
            if before in by_name:
                lines.append(f"    {_node(by_name[before])} -> {_node(step)};")
    lines.append("}")
    return "\n".join(lines)
