from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import postgres
from tests.helpers.cluster import Cluster
from tests.helpers.procs import Procs


def _cache_bytecode_outside_the_tree() -> None:
    """Under ``PYTHONDONTWRITEBYTECODE`` (set so the source tree gets no ``__pycache__``),
    every corral process a test starts (schedulers, workers and their fork servers, the
    command line: over a thousand in a full run) compiled every corral module from source
    again, about 0.2 s of CPU each on this 2-core machine. The processes this test process
    starts write their bytecode to a temporary folder of its own instead (removed at exit):
    the tree still gets none, and each module is compiled once per test process. Measured
    on three e2e files at -n 2: 25.4 s of CPU before, 21.5 s after."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    folder = tempfile.mkdtemp(prefix="corral-test-pycache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PYTHONPYCACHEPREFIX"] = folder
    del os.environ["PYTHONDONTWRITEBYTECODE"]


_cache_bytecode_outside_the_tree()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first (otherwise in the order collected). ``pytest -n 4``
    hands tests out in this order, one at a time (``--maxschedchunk 1`` in pyproject.toml),
    so the long ones start while there is still plenty of short work to fill the other
    processes, instead of one long test (the fuzz runs in tests/transport are collected
    last) running alone at the end while the others idle. Every xdist process sorts its own
    collection the same way (a stable sort). Four processes on two cores: most tests wait on
    real processes and real time (leases, schedules, restarts), not on the CPU; six were
    faster (271-400 s) but starved the leader-takeover tests' 2 s terms (2 failures in 4
    runs), so ./dev uses four."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


UNGROUPED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup`` (./dev test), xdist keeps the tests of one
    ``xdist_group`` in one test process by suffixing their node ids with the group's name.
    A pytest whose node ids ignore that (9.2: pytest-dev/pytest-xdist#1386) silently ran
    the leader tests side by side: each such test fails instead, saying why."""
    if not getattr(session.config.option, "loadgroup", False):
        return  # not an xdist test process (no -n), or another --dist
    for item in session.items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            item.stash[UNGROUPED] = (
                "--dist loadgroup did not keep this test's xdist_group in one test process: "
                "this pytest and pytest-xdist do not work together (see pyproject.toml)"
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if UNGROUPED in item.stash:
        pytest.fail(item.stash[UNGROUPED], pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on its test, for the fixtures' teardown (``procs``)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    """Real corral processes; every one still running is SIGKILLed after the test. When
    the test failed, the end of each process's log is printed with it (a CI run keeps no
    files): the scheduler's and the workers' own account of what happened."""
    p = Procs(tmp_path)
    yield p
    p.cleanup()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(p.log_text())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server's admin DSN: $CORRAL_TEST_POSTGRES, or one started for this
    test process (stopped at the end). Fails, never skips, when none can be had."""
    with postgres.server() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """The DSN of a new, empty database of its own for one test (dropped afterwards)."""
    with postgres.database(postgres_server) as dsn:
        yield dsn


@pytest.fixture
def cluster(procs: Procs) -> Cluster:
    """A scheduler process and workers, started by the test (``cluster.start(...)``, see
    tests/helpers/cluster.py); ``procs`` kills and reaps all of them after the test."""
    return Cluster(procs)
