"""`corral scheduler` start-up and storage failures, on real processes and real files: each
ends the process within a bound, non-zero, with one line naming the problem (no
traceback), and releases its ports; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.client import AsyncClient, Client
from tests.helpers.procs import FAST_TIMINGS, ROOT, Procs, free_address, give_up, wait_for_port

pytestmark = pytest.mark.slow

EXIT_BOUND_S = 20.0  # generous for a loaded 2-core machine; a hang is what this catches


class Run:
    """A scheduler process whose stdout and stderr go to separate files."""

    def __init__(self, procs: Procs, *args: str, env: dict[str, str] | None = None) -> None:
        n = len(procs.procs)
        self.out_path = procs.logs / f"startup-{n}.out"
        self.err_path = procs.logs / f"startup-{n}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "actors.cli", *args],
                env={**procs.env, **(env or {})},
                stdout=out,
                stderr=err,
                cwd=ROOT,
            )
        procs.procs.append(self.proc)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def exits(self) -> int:
        return self.proc.wait(timeout=EXIT_BOUND_S)


def start_line(run: Run) -> str:
    """The scheduler's start line: printed just after it starts listening, so wait for it."""
    deadline = time.monotonic() + EXIT_BOUND_S
    while not run.stdout.strip():
        assert time.monotonic() < deadline, "no start line"
        time.sleep(0.02)
    return run.stdout.strip().splitlines()[0]


def scheduler(procs: Procs, address: str, db: Path, *extra: str) -> Run:
    return Run(procs, "scheduler", "--bind", address, "--db", str(db), *FAST_TIMINGS, *extra)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` (SO_REUSEADDR, as a restarted scheduler binds: the
    closed connections' TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def assert_one_line_failure(run: Run, *words: str) -> str:
    code = run.exits()
    err = run.stderr
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], err
    return lines[0]


# ------------------------------------------------------------------ start-up failures


def test_a_db_that_is_not_sqlite_is_refused_with_one_line(procs: Procs, tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 100)
    address = free_address()
    run = scheduler(procs, address, db)
    assert_one_line_failure(run, str(db), "not an SQLite database")
    assert port_is_free(port_of(address))
    assert db.read_text().startswith("these are my notes"), "the file is left as it was"


def test_a_db_in_a_missing_folder_is_refused_with_one_line(procs: Procs, tmp_path: Path) -> None:
    db = tmp_path / "no" / "such" / "corral.db"
    address = free_address()
    run = scheduler(procs, address, db)
    assert_one_line_failure(run, str(tmp_path / "no" / "such"), "does not exist")
    assert port_is_free(port_of(address))


def test_a_metrics_port_in_use_is_one_line_and_frees_the_scheduler_port(
    procs: Procs, tmp_path: Path
) -> None:
    address = free_address()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        run = scheduler(procs, address, tmp_path / "c.db", "--metrics-port", str(metrics_port))
        assert_one_line_failure(run, f"127.0.0.1:{metrics_port}", "already in use")
    assert port_is_free(port_of(address))
    # The database was released too: another scheduler can open it at once.
    again = scheduler(procs, address, tmp_path / "c.db")
    wait_for_port(address, again.proc)


def test_a_scheduler_port_in_use_is_one_line_and_releases_the_database(
    procs: Procs, tmp_path: Path
) -> None:
    address, db = free_address(), tmp_path / "c.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port_of(address)))
        taken.listen()
        run = scheduler(procs, address, db)
        assert_one_line_failure(run, address, "in use")
    again = scheduler(procs, address, db)  # the database lock was released
    wait_for_port(address, again.proc)


def test_a_damaged_database_is_refused_at_start(procs: Procs, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
        conn.execute("CREATE INDEX t_y ON t(y)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}" * 20) for i in range(3000)])
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:  # garbage over a page in the middle of the b-trees
        f.seek(page_size * (pages // 2))
        f.write(b"\xa5" * page_size)
    address = free_address()
    run = scheduler(procs, address, db)
    assert_one_line_failure(run, str(db), "integrity check")
    assert port_is_free(port_of(address))


# ------------------------------------------------------------------ what start-up says


async def test_the_start_line_says_what_was_recovered_and_when_the_last_commit_was(
    procs: Procs, tmp_path: Path
) -> None:
    address, db = free_address(), tmp_path / "c.db"
    first = scheduler(procs, address, db)
    wait_for_port(address, first.proc)
    assert "new database" in start_line(first)
    assert "durability full" in start_line(first), "power-loss safe by default"
    async with AsyncClient(address, connect_timeout=10) as client:
        for i in range(3):
            await client.submit("record", [i])
    first.proc.terminate()
    assert first.exits() == 0
    second = scheduler(procs, address, db, "--log-level", "info")
    wait_for_port(address, second.proc)
    line = start_line(second)
    assert "recovered 3 live job(s) (3 queued)" in line, line
    assert "last commit 20" in line, line
    assert line.endswith("UTC)"), line
    assert "recovered 3 live job(s)" in second.stderr, "also logged at INFO"


# ------------------------------------------------------------------ while running


async def test_deleting_the_database_folder_stops_the_scheduler_before_it_acknowledges_more(
    procs: Procs, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    address = free_address()
    run = scheduler(procs, address, folder / "corral.db")
    wait_for_port(address, run.proc)
    async with AsyncClient(address, connect_timeout=10, request_timeout=3) as client:
        await client.submit("record", [1])
        shutil.rmtree(folder)
        # The rule under test: the first commit after more than a second without one
        # checks the file first. (The idle watch may stop the scheduler even sooner.)
        await asyncio.sleep(1.2)
        with pytest.raises(Exception):  # noqa: B017, PT011 - no ack, whatever the form
            await client.submit("record", [2])
    assert_one_line_failure(run, str(folder / "corral.db"), "deleted")
    assert port_is_free(port_of(address))


def test_a_database_file_moved_away_stops_an_idle_scheduler(procs: Procs, tmp_path: Path) -> None:
    address, db = free_address(), tmp_path / "c.db"
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    os.rename(db, tmp_path / "moved.db")
    assert_one_line_failure(run, str(db), "deleted")
    assert port_is_free(port_of(address))


# ------------------------------------------------------------------ full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs root and mount(8)); unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        give_up("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        give_up(f"cannot mount a tmpfs here: {done.stderr!r}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_stops_the_scheduler_naming_it_and_loses_nothing_acknowledged(
    procs: Procs, tmp_path: Path, small_disk: Path
) -> None:
    address, db = free_address(), small_disk / "corral.db"
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    acknowledged: list[int] = []
    payload = "x" * 20_000  # ~100 jobs fill 2 MB
    async with AsyncClient(address, connect_timeout=10, request_timeout=10) as client:
        with contextlib.suppress(Exception):  # the submit that finds the disk full
            for i in range(1000):
                acknowledged.append(await client.submit("record", [i, payload]))
    assert 10 < len(acknowledged) < 1000
    line = assert_one_line_failure(run, str(db), "disk is full")
    assert "cannot rollback" not in line
    assert port_is_free(port_of(address))
    # With room again, every acknowledged job is there.
    remount = ["mount", "-o", "remount,size=64m", str(small_disk)]
    await asyncio.to_thread(subprocess.run, remount, check=True)
    again = scheduler(procs, address, db)
    wait_for_port(address, again.proc)
    async with AsyncClient(address, connect_timeout=10) as client:
        for job_id in acknowledged:
            view = await client.job(job_id)
            assert view is not None, job_id
            assert view.status == "QUEUED", job_id
    again.proc.terminate()
    assert again.exits() == 0


def fill(path: Path) -> None:
    """A file taking the rest of its disk, to the last byte."""
    with open(path, "wb") as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


def test_a_clean_stop_on_a_full_disk_says_the_write_ahead_log_stays(
    procs: Procs, tmp_path: Path, small_disk: Path
) -> None:
    """SIGTERM folds the log into the file and removes it; on a disk that filled up meanwhile
    it cannot, and said nothing (exit 0, the log silently left). Now one warning, and the
    next start, with room again, replays every job."""
    address, db = free_address(), small_disk / "corral.db"
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    with Client(address, connect_timeout=10, request_timeout=10) as client:
        ids = [client.submit("record", [i, "x" * 20_000]) for i in range(20)]
    fill(small_disk / "filler")
    run.proc.terminate()
    assert run.exits() == 0
    assert "could not be folded" in run.stderr, run.stderr
    assert os.path.exists(f"{db}-wal")
    os.remove(small_disk / "filler")
    again = scheduler(procs, address, db)
    wait_for_port(address, again.proc)
    assert f"recovered {len(ids)} live job(s)" in start_line(again)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("env", "flags", "words"),
    [
        ({"CORRAL_LEASE": "abc"}, [], ["--lease / CORRAL_LEASE", "'abc'", "seconds > 0"]),
        ({"CORRAL_LEASE": "-1"}, [], ["CORRAL_LEASE", "'-1'", "seconds > 0"]),
        ({}, ["--lease", "-1"], ["--lease", "'-1'", "seconds > 0"]),
        ({"CORRAL_METRICS_PORT": "abc"}, [], ["CORRAL_METRICS_PORT", "'abc'", "1 to 65535"]),
        ({}, ["--metrics-port", "70000"], ["--metrics-port", "'70000'", "1 to 65535"]),
        ({"CORRAL_STRATEGY": "bogus"}, [], ["CORRAL_STRATEGY", "'bogus'", "fifo"]),
        ({"CORRAL_DURABILITY": "bogus"}, [], ["CORRAL_DURABILITY", "'bogus'", "full, normal"]),
        ({"CORRAL_LOG_LEVEL": "loud"}, [], ["CORRAL_LOG_LEVEL", "DEBUG, INFO"]),
        ({}, ["--log-format", "xml"], ["--log-format", "'xml'", "text, json"]),
        ({}, ["--lease-grace", "-0.5"], ["--lease-grace", ">= 0"]),
        (
            {},
            ["--heartbeat-interval", "10", "--lease", "2"],
            ["--lease", "at least 2 x --heartbeat-interval", "self-fencing"],
        ),
        ({}, ["--suspect-after", "9"], ["--suspect-after", "at most --lease"]),
        ({}, ["--suspect-after", "0.1"], ["--suspect-after", "more than --heartbeat-interval"]),
        ({}, ["--bind", "tcp://127.0.0.1:99999"], ["--bind", "PORT 1 to 65535"]),
        ({}, ["--backoff-factor", "0.5"], ["--backoff-factor", ">= 1"]),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, env: dict[str, str], flags: list[str], words: list[str]
) -> None:
    address, db = free_address(), str(tmp_path / "c.db")
    done = subprocess.run(
        [sys.executable, "-m", "actors.cli", "scheduler", "--bind", address, "--db", db, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    for word in words:
        assert word in line, line
    assert not (tmp_path / "c.db").exists(), "nothing was opened"


async def test_log_flags_work_after_the_command_and_json_is_one_object_per_line(
    procs: Procs, tmp_path: Path
) -> None:
    address = free_address()
    run = Run(
        procs,
        "scheduler",
        "--bind",
        address,
        "--db",
        str(tmp_path / "c.db"),
        "--log-level",
        "info",
        "--log-format",
        "json",
        env={"CORRAL_LOG_LEVEL": "error"},  # the flag wins over the variable
    )
    wait_for_port(address, run.proc)
    run.proc.terminate()
    assert run.exits() == 0
    records = [json.loads(line) for line in run.stderr.strip().splitlines()]
    assert records, "INFO lines were logged"
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("corral scheduler on" in r["message"] for r in records)
    assert {r["level"] for r in records} <= {"INFO", "WARNING", "ERROR", "DEBUG"}


# ------------------------------------------------------------------ a damaged WAL


def killed_with_jobs_in_the_wal(procs: Procs, address: str, db: Path, n: int) -> None:
    """Submit ``n`` jobs one by one (one commit each), then SIGKILL the scheduler: the
    commits are in the WAL only (the store checkpoints every 256 commits)."""
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)

    async def submit() -> None:
        async with AsyncClient(address, connect_timeout=10) as client:
            for i in range(n):
                await client.submit("record", [i])

    asyncio.run(submit())
    run.proc.kill()
    run.proc.wait(timeout=10)
    assert Path(f"{db}-wal").stat().st_size > 0


def test_a_wal_overwritten_with_garbage_is_refused_instead_of_silently_dropped(
    procs: Procs, tmp_path: Path
) -> None:
    address, db = free_address(), tmp_path / "c.db"
    killed_with_jobs_in_the_wal(procs, address, db, 100)
    wal = Path(f"{db}-wal")
    wal.write_bytes(os.urandom(wal.stat().st_size))
    garbage = wal.read_bytes()
    run = scheduler(procs, address, db)
    assert_one_line_failure(run, str(wal), "damaged")
    assert wal.read_bytes() == garbage, "the evidence is left as it was"
    assert port_is_free(port_of(address))


def test_a_truncated_wal_is_named_and_the_start_line_shows_what_was_recovered(
    procs: Procs, tmp_path: Path
) -> None:
    address, db = free_address(), tmp_path / "c.db"
    killed_with_jobs_in_the_wal(procs, address, db, 100)
    wal = Path(f"{db}-wal")
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 2 + 100)  # inside a frame
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    assert str(wal) in run.stderr
    assert "ends inside a frame" in run.stderr
    line = start_line(run)
    recovered = int(line.split("recovered ")[1].split()[0])
    assert 0 < recovered < 100, line


def test_a_wal_copied_from_another_database_is_refused(procs: Procs, tmp_path: Path) -> None:
    """Two databases, both killed with commits in their logs; one's log copied over the
    other's: SQLite would replay it as this database's contents (its jobs replaced)."""
    mine, other = tmp_path / "mine.db", tmp_path / "other.db"
    killed_with_jobs_in_the_wal(procs, free_address(), mine, 5)
    killed_with_jobs_in_the_wal(procs, free_address(), other, 50)
    shutil.copyfile(f"{other}-wal", f"{mine}-wal")
    address = free_address()
    run = scheduler(procs, address, mine)
    assert_one_line_failure(run, f"{mine}-wal", "belongs to another database")
    assert port_is_free(port_of(address))
    os.remove(f"{mine}-wal")  # moved aside, as the message says: this database starts again
    run = scheduler(procs, address, mine)
    wait_for_port(address, run.proc)
    assert "Traceback" not in run.stderr


def test_a_wal_whose_database_file_is_missing_or_empty_is_refused(
    procs: Procs, tmp_path: Path
) -> None:
    """Killed with acknowledged jobs only in its log, then the file moved away (or deleted
    while the scheduler ran, or emptied): SQLite would start a new database and reset the
    log with those jobs in it. Put back, the file and its log recover every job."""
    address, db = free_address(), tmp_path / "c.db"
    killed_with_jobs_in_the_wal(procs, address, db, 20)
    wal = Path(f"{db}-wal")
    kept = wal.read_bytes()
    moved = tmp_path / "moved.db"
    os.rename(db, moved)
    for leave in ("missing", "empty"):
        if leave == "empty":
            db.write_bytes(b"")
        run = scheduler(procs, address, db)
        assert_one_line_failure(run, str(wal), "missing or empty")
        assert wal.read_bytes() == kept, "the log is left as it was"
        assert port_is_free(port_of(address))
    os.replace(moved, db)  # restored, as the message says
    run = scheduler(procs, address, db)
    wait_for_port(address, run.proc)
    assert "recovered 20 live job(s)" in start_line(run)
