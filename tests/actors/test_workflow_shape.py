"""The DAG resolver's workflow check: topological order, and every malformed shape refused
with a message that names the problem (a cycle by its path)."""

from __future__ import annotations

import pytest

from actors.errors import WorkflowRejected
from actors.scheduler.dag import check_workflow
from transport import protocol as wire


def steps(*pairs: tuple[str, list[str]]) -> list[wire.StepSpec]:
    return [wire.StepSpec(name, wire.JobSpec("t"), after) for name, after in pairs]


def test_the_order_puts_every_step_after_the_steps_it_needs() -> None:
    shape = steps(("d", ["b", "c"]), ("b", ["a"]), ("c", ["a"]), ("a", []))
    order = [shape[i].name for i in check_workflow(shape)]
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")


def test_a_long_chain_is_checked_without_recursion() -> None:
    chain = steps(*((f"s{i}", [f"s{i - 1}"] if i else []) for i in range(20_000)))
    assert len(check_workflow(chain)) == 20_000


@pytest.mark.parametrize(
    ("shape", "code", "message"),
    [
        (steps(("a", ["c"]), ("b", ["a"]), ("c", ["b"])), "cycle", "a -> b -> c -> a"),
        (steps(("a", []), ("b", ["b"])), "self_dependency", "step 'b' runs after itself"),
        (steps(("a", ["zz"])), "unknown_step", "runs after 'zz'"),
        (steps(("a", []), ("a", [])), "duplicate_step", "step name 'a' is used twice"),
        (steps(("a", []), ("b", ["a", "a"])), "invalid", "lists a step twice"),
    ],
)
def test_malformed_workflows_are_refused_naming_the_problem(
    shape: list[wire.StepSpec], code: str, message: str
) -> None:
    with pytest.raises(WorkflowRejected) as refused:
        check_workflow(shape)
    assert refused.value.code == code
    assert message in refused.value.message
