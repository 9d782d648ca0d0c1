from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Real corral processes; every one still running is SIGKILLed after the test."""
    p = Procs(tmp_path)
    yield p
    p.cleanup()
