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

from actors.errors import WorkflowRejected
from actors.lifecycle import JobState
from actors.runtime import Actor
from actors.scheduler.messages import CheckWorkflow, Doom, Finished, Release, Track, WorkflowChecked
from transport import protocol as wire


def check_workflow(steps: list[wire.StepSpec]) -> list[int]:
    """Validate a workflow's shape; return step indices in a topological order.

    Raises WorkflowRejected for duplicate names, self-dependencies, unknown steps and
    cycles (naming the cycle's path). Kahn's algorithm: O(steps + edges)."""
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.name in index:
            raise WorkflowRejected("duplicate_step", f"step name {step.name!r} is used twice")
        index[step.name] = i
    dependents: list[list[int]] = [[] for _ in steps]
    waiting = [0] * len(steps)
    for i, step in enumerate(steps):
        if len(set(step.after)) != len(step.after):
            raise WorkflowRejected("invalid", f"step {step.name!r} lists a step twice in 'after'")
        for before in step.after:
            if before == step.name:
                raise WorkflowRejected("self_dependency", f"step {step.name!r} runs after itself")
            if before not in index:
                raise WorkflowRejected(
                    "unknown_step",
                    f"step {step.name!r} runs after {before!r}, not a step of this workflow",
                )
            dependents[index[before]].append(i)
            waiting[i] += 1
    order = [i for i in range(len(steps)) if waiting[i] == 0]
    for i in order:  # the list grows while we walk it
        for child in dependents[i]:
            waiting[child] -= 1
            if waiting[child] == 0:
                order.append(child)
    if len(order) < len(steps):
        cycle = _find_cycle(steps, index, {i for i in range(len(steps)) if waiting[i] > 0})
        raise WorkflowRejected("cycle", "steps form a cycle: " + " -> ".join(cycle))
    return order


def _find_cycle(steps: list[wire.StepSpec], index: dict[str, int], stuck: set[int]) -> list[str]:
    """A cycle among ``stuck`` steps, in run order (a -> b: a must run before b)."""
    # Every stuck step has a stuck prerequisite; following them must revisit a step.
    start = min(stuck)
    seen: dict[int, int] = {}
    path: list[int] = []
    current = start
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = next(index[b] for b in steps[current].after if index[b] in stuck)
    loop = [*path[seen[current] :], current]
    return [steps[i].name for i in reversed(loop)]


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

    def finished_all(self, jobs: list[tuple[int, str]]) -> tuple[list[int], list[tuple[int, str]]]:
        """:meth:`finished` for each job, in order; nothing to do (and no work per job)
        while no job waits on another, the usual case outside workflows."""
        released: list[int] = []
        doomed: list[tuple[int, str]] = []
        if not self.waiting_on and not self.children:
            return released, doomed
        for job_id, status in jobs:
            r, d = self.finished(job_id, status)
            released += r
            doomed += d
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
            case CheckWorkflow(peer=peer, request=request):
                try:
                    order = check_workflow(request.steps)
                except WorkflowRejected as rejected:
                    self.scheduler.tell(WorkflowChecked(peer, request, [], rejected))
                else:
                    self.scheduler.tell(WorkflowChecked(peer, request, order, None))
            case Finished(jobs=jobs):
                released, doomed = self.graph.finished_all(jobs)
                if released:
                    self.scheduler.tell(Release(released))
                if doomed:
                    self.scheduler.tell(Doom(doomed))
            case _:
                raise TypeError(f"DAG resolver got an unexpected message: {message!r}")
