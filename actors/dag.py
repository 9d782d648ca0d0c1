"""The DAG resolver actor: owns the dependency graph of unfinished jobs.

It hears ``Track(child, parents)`` when a job is created with parents that
have not yet succeeded, and ``Finished`` when jobs' terminal states are
committed. A child is released (``Release``) when its last parent succeeds;
when a parent ends any other way, every tracked descendant is doomed
(``Doom``, ending UPSTREAM_FAILED) with the original cause. Each finished job
touches only its own out-edges, so releasing costs time linear in the edges
touched, never a scan of the graph.
"""

from __future__ import annotations

from typing import Any

from actors.lifecycle import JobState
from actors.messages import Doom, Finished, Release, Track
from actors.runtime import Actor


class DependencyGraph:
    """Plain state machine: edges in, releases and dooms out."""

    def __init__(self) -> None:
        self.waiting_on: dict[int, set[int]] = {}  # child -> parents not yet succeeded
        self.children: dict[int, list[int]] = {}  # parent -> tracked children

    def track(self, child: int, parents: list[int]) -> None:
        self.waiting_on[child] = set(parents)
        for parent in parents:
            self.children.setdefault(parent, []).append(child)

    def finished(self, job_id: int, status: str) -> tuple[list[int], list[tuple[int, str]]]:
        """A job's terminal state is committed: which children it releases or dooms."""
        released: list[int] = []
        doomed: list[tuple[int, str]] = []
        self.waiting_on.pop(job_id, None)
        kids = self.children.pop(job_id, [])
        if status == JobState.SUCCEEDED:
            for child in kids:
                waiting = self.waiting_on.get(child)
                if waiting is None:
                    continue
                waiting.discard(job_id)
                if not waiting:
                    del self.waiting_on[child]
                    released.append(child)
        else:
            cause = f"upstream job {job_id} ended {status}"
            stack = list(kids)
            while stack:
                child = stack.pop()
                if self.waiting_on.pop(child, None) is None:
                    continue  # already doomed through another path
                doomed.append((child, cause))
                stack.extend(self.children.pop(child, []))
        return released, doomed

    def __len__(self) -> int:
        return len(self.waiting_on)


class DagResolver(Actor):
    def __init__(self, graph: DependencyGraph | None = None) -> None:
        super().__init__("dag")
        self.graph = graph or DependencyGraph()
        self.scheduler: Actor

    async def handle(self, message: Any) -> None:
        match message:
            case Track(job_id=child, parents=parents):
                self.graph.track(child, parents)
            case Finished(jobs=jobs):
                released: list[int] = []
                doomed: list[tuple[int, str]] = []
                for job_id, status in jobs:
                    r, d = self.graph.finished(job_id, status)
                    released += r
                    doomed += d
                if released:
                    self.scheduler.tell(Release(released))
                if doomed:
                    self.scheduler.tell(Doom(doomed))
            case _:
                raise TypeError(f"DAG resolver got an unexpected message: {message!r}")
