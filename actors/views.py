"""Terminal views of scheduler state, rendered with rich."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table

from actors.lifecycle import JobState
from transport import protocol as wire


def status_renderable(status: wire.StatusView) -> Group:
    jobs = Table(title="jobs", show_edge=False)
    for state in JobState:
        jobs.add_column(state.value, justify="right")
    jobs.add_row(*(str(status.jobs.get(state.value, 0)) for state in JobState))
    workers = Table(title=f"workers (strategy: {status.strategy})", show_edge=False)
    for column in ("name", "state", "slots used", "queues", "last seen"):
        workers.add_column(column)
    for w in sorted(status.workers, key=lambda w: w.name):
        colour = {"alive": "green", "suspect": "yellow"}.get(w.state, "red")
        workers.add_row(
            w.name,
            f"[{colour}]{w.state}[/]",
            f"{w.running}/{w.slots}",
            ",".join(w.queues),
            f"{w.last_seen_s:.1f}s ago",
        )
    if not status.workers:
        workers.add_row("(none connected)", "", "", "", "")
    return Group(jobs, "", workers)


def render_status(status: wire.StatusView, console: Console | None = None) -> None:
    (console or Console()).print(status_renderable(status))
