"""A real PostgreSQL server for the tests, never a mock: the one ``CORRAL_TEST_POSTGRES``
names (a DSN of a role that may CREATE DATABASE), or one this process starts itself in a
temporary folder from the binaries the ``pgserver`` wheel ships (the test extras install
it), or from Debian's ``postgresql`` package when that is what is there.

Each test gets a database of its own (``database``), created empty and dropped after.
Under pytest-xdist every worker process starts its own server, lazily, the first time one
of its tests asks: about a second and 30 MB each, and no server outlives the process that
started it (the postmaster gets SIGQUIT when its parent dies, see ``_die_with_parent``),
so there is nothing to share, count or clean up between workers.

PostgreSQL refuses to run as root. As root the server runs as ``nobody`` (present on every
Linux), from a copy of the binaries when nobody could not reach the installed ones.
Anything that keeps it from starting raises ``PostgresUnavailable`` with the server's log:
the fixtures fail, never skip.

Run it by hand for a bench or a look: ``python -m tests.helpers.postgres`` prints a DSN
and serves until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV = "CORRAL_TEST_POSTGRES"
PREFIX = "corral-pg-"
# A server folder this old whose postmaster is gone was left by a killed test run.
STALE_AFTER_S = 3600.0
USER = "corral"
PASSWORD = "corral-test-secret"  # unlike anything else in a log, so a leak shows
START_TIMEOUT_S = 30.0


class PostgresUnavailable(RuntimeError):
    """Raised when no PostgreSQL server can be had for the tests (the message says why)."""


def binaries() -> Path:
    """The folder holding ``postgres`` and ``initdb``: pgserver's, else Debian's newest."""
    # find_spec, not import: pgserver's import creates folders and warns (platformdirs).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (folder / "postgres").exists():
            return folder
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    if debian:
        return debian[-1].parent
    raise PostgresUnavailable(
        "no PostgreSQL binaries: install the test extras (pip install -e '.[test]', which "
        f"brings pgserver) or Debian's postgresql package, or set {ENV} to a server's DSN"
    )


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach and run ``path``."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in [path, *path.parents])


def _die_with_parent() -> None:  # runs in the child, after it became ``nobody``
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGQUIT)  # SIGQUIT: PostgreSQL's immediate shutdown


class LocalServer:
    """A throwaway PostgreSQL server on 127.0.0.1, with password (SCRAM) authentication so
    wrong credentials are refused as on a real one."""

    def __init__(self) -> None:
        _sweep_stale()
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.run_as: dict[str, object] = {}

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Initialise and start the server; return the DSN of its superuser."""
        bin_dir = binaries()
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
            if not _reachable_by_others(bin_dir / "postgres"):
                install = bin_dir.parent
                shutil.copytree(install, self.folder / "install", symlinks=True)
                bin_dir = self.folder / "install" / "bin"
                for path in [self.folder / "install", *(self.folder / "install").rglob("*")]:
                    path.chmod(path.stat().st_mode | 0o055)
        secret = self.folder / "password"
        secret.write_text(PASSWORD)
        if self.run_as:
            os.chown(secret, int(self.run_as["user"]), int(self.run_as["group"]))  # type: ignore[call-overload]
        self._run(
            bin_dir / "initdb",
            "-D", str(self.data), "-U", USER, f"--pwfile={secret}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        self.port = _free_port()
        command = [
            str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.folder}",
            # Small: up to three of these run at once on a test machine.
            "-c", "shared_buffers=32MB",
            "-c", "max_connections=200",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Runs in the child after it became ``nobody``; the child has no threads.
                preexec_fn=_die_with_parent,
                **self.run_as,  # type: ignore[arg-type]
            )
        self._wait_ready()
        return self.dsn

    def _run(self, *args: str | Path) -> None:
        done = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            check=False,
            timeout=START_TIMEOUT_S,
            **self.run_as,  # type: ignore[arg-type]
        )
        if done.returncode:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise PostgresUnavailable(f"{Path(args[0]).name} failed:\n{output}")

    def _wait_ready(self) -> None:
        assert self.proc is not None
        pid_file = self.data / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            time.sleep(0.02)
        log = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise PostgresUnavailable(
            f"PostgreSQL did not start within {START_TIMEOUT_S:g} s (in {self.folder}):\n{log}"
        )

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and remove its folder."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _sweep_stale() -> None:
    """Remove the folders of servers whose test run was killed before it could (the server
    itself died with it: see ``_die_with_parent``)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime < STALE_AFTER_S:
                continue
            pid_file = folder / "data" / "postmaster.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), 0)
                continue  # its server still runs
        except PermissionError:
            continue  # someone else's live server
        except (OSError, ValueError, IndexError):
            pass  # no such process (or no readable pid): stale
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The DSN of a server that accepts CREATE DATABASE: ``CORRAL_TEST_POSTGRES``, or one
    started here (stopped on exit). Raises PostgresUnavailable, never skips."""
    given = os.environ.get(ENV)
    if given:
        yield given
        return
    local = LocalServer()
    try:
        yield local.start()
    finally:
        local.stop()


def _with_database(admin_dsn: str, name: str) -> str:
    """``admin_dsn`` pointing at database ``name`` instead (query options kept)."""
    parts = urlsplit(admin_dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(admin_dsn: str, statement: str) -> None:
    """Run one statement as the admin, on a loop of its own in a thread of its own (the
    caller may be a sync fixture or code already inside an event loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_admin_async(admin_dsn, statement))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="postgres-admin")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def _admin_async(admin_dsn: str, statement: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_dsn, timeout=15)
    except (OSError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailable(f"cannot reach the test PostgreSQL server: {exc}") from None
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database(admin_dsn: str) -> str:
    """A new, empty database on the server; its DSN (same role and options)."""
    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    _admin(admin_dsn, f'CREATE DATABASE "{name}"')
    return _with_database(admin_dsn, name)


def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop the database ``create_database`` made, even with sessions still on it (FORCE,
    PostgreSQL 13+: a scheduler the test SIGKILLed may still be connected)."""
    name = urlsplit(dsn).path.lstrip("/")
    _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(admin_dsn: str) -> Iterator[str]:
    """A new, empty database on the server for one test; dropped afterwards."""
    dsn = create_database(admin_dsn)
    try:
        yield dsn
    finally:
        drop_database(admin_dsn, dsn)


def main() -> None:
    # SIGTERM (and SIGINT, which a shell may ignore in background jobs) stop it cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with server() as dsn:
        print(dsn, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
