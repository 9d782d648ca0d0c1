from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.procs import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Real corral processes; every one still running is SIGKILLed after the test."""
    p = Procs(tmp_path)
    yield p
    p.cleanup()


@pytest.fixture
def cluster(procs: Procs) -> Cluster:
    """A scheduler process and workers, started by the test (``cluster.start(...)``, see
    tests/helpers/cluster.py); ``procs`` kills and reaps all of them after the test."""
    return Cluster(procs)
