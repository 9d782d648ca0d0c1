"""A job's shape checks the schema cannot express (``admission.refusal``): each refused
with one message naming the field, a sound job passed."""

from __future__ import annotations

import pytest

from actors.client import job_spec
from actors.scheduler.admission import refusal
from transport import protocol as wire


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (job_spec("t", backoff=(5.0, 2.0, 1.0)), "backoff cap (1) must be at least base (5)"),
        (job_spec("t", max_concurrent=2), "max_concurrent needs a concurrency_key"),
        (job_spec("t", depends_on=[3, 3]), "depends_on lists a job twice"),
    ],
)
def test_a_job_of_a_shape_the_scheduler_cannot_run_is_refused_naming_why(
    spec: wire.JobSpec, message: str
) -> None:
    refused = refusal(4, spec)
    assert refused is not None
    assert (refused.index, refused.code, refused.message) == (4, "invalid", message)


def test_a_sound_job_passes_including_a_backoff_whose_cap_equals_its_base() -> None:
    assert refusal(0, job_spec("t", [1], backoff=(5.0, 2.0, 5.0))) is None
    assert refusal(0, job_spec("t", concurrency_key="k", max_concurrent=1)) is None
