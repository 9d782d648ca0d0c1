"""The scheduler's HTTP endpoints (actors/http/server.py) on real scheduler processes,
with real HTTP requests: /metrics served from the scheduler's loop and gone when it
stops; loopback by default, any other address refused without --http-token-file (only
checked, never bound: nothing is exposed), or served in a network namespace's cable with
one; with a token file, 401 without the token or with a wrong one and 200 with it; the
token file's rules; a port in use; a standby on PostgreSQL serving its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.client import job_spec
from tests.e2e.test_startup import (
    Run,
    assert_one_line_failure,
    port_is_free,
    port_of,
    scheduler,
    start_line,
)
from tests.helpers.cluster import Cluster
from tests.helpers.leaders import until_leading
from tests.helpers.netns import namespace
from tests.helpers.procs import Procs, corral, free_address, wait_for_port
from transport import protocol as wire

pytestmark = pytest.mark.slow

TOKEN = "c0rral-test-token-6d1f"
EXIT_USAGE = 2


def free_port() -> int:
    return port_of(free_address())


def token_file(tmp: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = tmp / "http.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def get(url: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    """A real HTTP GET: the status, the body and the headers (4xx included)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(), dict(exc.headers)


def figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def until_figures(
    url: str, wanted: dict[tuple[str, tuple[tuple[str, str], ...]], float], token: str | None = None
) -> dict:
    """Scrape until every figure in ``wanted`` has its value; the figures then. Each actor
    publishes its own snapshot once a second (actors.metrics), so two figures of one job
    can show in different scrapes."""
    deadline = time.monotonic() + 30
    while True:
        status, text, _ = get(url, token)
        found = figures(text) if status == 200 else {}
        seen = {key: found.get(key) for key in wanted}
        if seen == wanted:
            return found
        assert time.monotonic() < deadline, (status, seen)
        await asyncio.sleep(0.1)


async def until_figure(url: str, name: str, value: float, token: str | None = None) -> dict:
    """Scrape until the unlabelled figure ``name`` is ``value``; the figures then."""
    return await until_figures(url, {(name, ()): value}, token)


def until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    wait_for_port(f"tcp://127.0.0.1:{port}", proc)


@contextlib.contextmanager
def port_taken() -> Iterator[int]:
    """A loopback port another program listens on, for the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# ------------------------------------------------------------------ serving


async def test_metrics_are_served_on_the_http_port_and_stop_with_the_scheduler(
    cluster: Cluster,
) -> None:
    port = free_port()
    cluster.start("--http-port", str(port))
    until_listening(port, cluster.scheduler)
    cluster.worker("w0", 2)
    async with cluster.client() as client:
        ids = await client.submit_many([job_spec("record", [i]) for i in range(5)])
        await client.wait(ids, timeout=30)
    url = f"http://127.0.0.1:{port}/metrics"
    found = await until_figures(
        url,
        {
            ("corral_assignment_latency_seconds_count", ()): 5,
            ("corral_jobs_succeeded_total", (("queue", "default"),)): 5,
        },
    )
    assert (found[("corral_leader", ())], found[("corral_http_refused_total", ())]) == (1, 0)
    cluster.stop_scheduler(signal.SIGTERM)
    assert cluster.scheduler.returncode == 0
    assert port_is_free(port), "the HTTP port is released with the scheduler"


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["--http-bind", "0.0.0.0"], {}),
        (["--http-bind", "::"], {}),
        ([], {"CORRAL_HTTP_BIND": "0.0.0.0"}),
        (["--metrics-addr", "0.0.0.0"], {}),  # the older name: the same rule
    ],
    ids=["flag", "ipv6", "variable", "older-name"],
)
def test_a_bind_other_hosts_can_reach_without_a_token_file_refuses_to_start(
    procs: Procs, tmp_path: Path, flags: list[str], env: dict[str, str]
) -> None:
    address, port = free_address(), free_port()
    run = Run(
        procs, "scheduler", "--bind", address, "--db", str(tmp_path / "c.db"),
        "--http-port", str(port), *flags, env=env,
    )  # fmt: skip
    line = assert_one_line_failure(run, "--http-token-file", "not allowed", "loopback")
    assert run.proc.returncode == EXIT_USAGE, line
    assert port_is_free(port)
    assert port_is_free(port_of(address))
    assert not (tmp_path / "c.db").exists(), "refused before the database is opened"


async def test_with_a_token_file_requests_need_the_bearer_token_even_on_loopback(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    token = token_file(tmp_path)
    run = scheduler(
        procs, free_address(), tmp_path / "c.db", "--http-port", str(port),
        "--http-token-file", str(token),
    )  # fmt: skip
    until_listening(port, run.proc)
    url = f"http://127.0.0.1:{port}"
    for path, given in [("/metrics", None), ("/metrics", "wrong"), ("/metrics", TOKEN[:-1])]:
        status, body, headers = get(url + path, given)
        assert (status, headers.get("WWW-Authenticate")) == (401, 'Bearer realm="corral"')
        assert "Authorization: Bearer" in body
    status, _, headers = get(f"{url}/no-such-page")
    assert (status, headers.get("WWW-Authenticate")) == (401, 'Bearer realm="corral"')
    status, body, _ = get(f"{url}/metrics", TOKEN)
    assert status == 200
    assert figures(body)[("corral_http_refused_total", ())] == 4
    run.proc.send_signal(signal.SIGTERM)
    assert run.exits() == 0
    refused = [line for line in run.stderr.splitlines() if "HTTP request refused" in line]
    assert refused, run.stderr
    assert "GET /metrics from 127.0.0.1" in refused[0]
    assert TOKEN not in run.stderr + run.stdout


async def test_on_another_hosts_address_with_a_token_it_serves_that_host_with_the_token(
    procs: Procs, tmp_path: Path
) -> None:
    # The scheduler's side of a network namespace's cable: an address another "host" (the
    # namespace) reaches, which no other machine does.
    with namespace() as ns:
        port = free_port()
        run = scheduler(
            procs, free_address(), tmp_path / "c.db", "--http-bind", ns.host_ip,
            "--http-port", str(port), "--http-token-file", str(token_file(tmp_path)),
        )  # fmt: skip
        wait_for_port(f"tcp://{ns.host_ip}:{port}", run.proc)
        url = f"http://{ns.host_ip}:{port}/metrics"
        probe = (
            "import sys, urllib.request, urllib.error\n"
            "r = urllib.request.Request(sys.argv[1])\n"
            "if len(sys.argv) > 2: r.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
            "try: print(urllib.request.urlopen(r, timeout=10).status)\n"
            "except urllib.error.HTTPError as e: print(e.code)\n"
        )

        def from_the_other_host(*token: str) -> str:
            done = subprocess.run(
                [*ns.prefix(), sys.executable, "-c", probe, url, *token],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        assert from_the_other_host() == "401"
        assert from_the_other_host("wrong") == "401"
        assert from_the_other_host(TOKEN) == "200"
        assert "not allowed" not in run.stderr


@pytest.mark.parametrize(
    ("text", "mode", "words"),
    [
        (TOKEN, 0o644, "readable by its owner only (chmod 600)"),
        (TOKEN, 0o640, "readable by its owner only (chmod 600)"),
        ("\n", 0o600, "empty"),
        (None, 0o600, "No such file"),
    ],
    ids=["644", "640", "empty", "missing"],
)
def test_a_token_file_that_is_not_private_or_holds_no_token_refuses_to_start(
    procs: Procs, tmp_path: Path, text: str | None, mode: int, words: str
) -> None:
    path = token_file(tmp_path, text, mode) if text is not None else tmp_path / "none"
    address, port = free_address(), free_port()
    run = scheduler(
        procs, address, tmp_path / "c.db", "--http-port", str(port),
        "--http-token-file", str(path),
    )  # fmt: skip
    line = assert_one_line_failure(run, "--http-token-file", str(path), words)
    assert run.proc.returncode == EXIT_USAGE, line
    assert port_is_free(port)
    assert port_is_free(port_of(address))


@pytest.mark.parametrize("flag", ["--http-port", "--metrics-port"])
def test_an_http_port_in_use_is_one_line_exit_2_and_opens_nothing_else(
    procs: Procs, tmp_path: Path, flag: str
) -> None:
    address = free_address()
    with port_taken() as port:
        run = scheduler(procs, address, tmp_path / "c.db", flag, str(port))
        line = assert_one_line_failure(run, flag, f"127.0.0.1:{port}", "already in use")
        assert run.proc.returncode == EXIT_USAGE, line
    assert port_is_free(port_of(address))
    # The database is free too: a scheduler starts on it at once, and serves HTTP there.
    again = scheduler(procs, address, tmp_path / "c.db", flag, str(port))
    assert start_line(again).startswith(f"corral scheduler on {address}")
    until_listening(port, again.proc)
    assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200


# ------------------------------------------------------------------ standbys


async def test_a_standby_serves_http_too_and_its_metrics_once_it_leads(
    procs: Procs, postgres_dsn: str, tmp_path: Path
) -> None:
    a, b = free_address(), free_address()
    port_a, port_b = free_port(), free_port()
    token = str(token_file(tmp_path))
    leader = procs.scheduler(
        a, postgres_dsn, "--http-port", str(port_a), "--http-token-file", token
    )
    await until_leading([a])
    second = procs.scheduler(
        b, postgres_dsn, "--http-port", str(port_b), "--http-token-file", token
    )
    until_listening(port_b, second)
    standby = f"http://127.0.0.1:{port_b}/metrics"
    assert get(standby)[0] == 401, "a standby asks for the token too"
    status, body, _ = get(standby, TOKEN)
    assert status == 200
    assert figures(body) == {("corral_leader", ()): 0, ("corral_http_refused_total", ()): 1}
    found = await until_figure(f"http://127.0.0.1:{port_a}/metrics", "corral_leader", 1, TOKEN)
    assert ("corral_jobs_running", ()) in found
    leader.send_signal(signal.SIGTERM)  # resigns: the standby takes over within a poll
    found = await until_figure(standby, "corral_leader", 1, TOKEN)
    assert found[("corral_jobs_running", ())] == 0


async def test_values_json_cannot_hold_never_break_the_job_views(cluster: Cluster) -> None:
    """A map keyed by an array, a msgpack extension value and a value no decoder reads are
    all a client's to send (and a task's to return): the CLI's and the dashboard's views show
    them as text. They crashed `corral job` and `corral jobs --json` with a traceback, and
    answered /api/jobs with a 500 for everyone."""
    port = free_port()
    cluster.start("--http-port", str(port))
    until_listening(port, cluster.scheduler)
    cluster.worker("w", 2)
    odd = [{(1, 2): "a"}, msgspec.msgpack.Ext(5, b"x")]
    async with cluster.client() as client:
        ids = [await client.submit("record", [value]) for value in odd]
        # A timestamp extension of a length no decoder accepts, sent as the raw arguments.
        bad = wire.JobSpec("record", msgspec.Raw(b"\x91\xd4\xff\x00"))
        [unreadable] = await client.submit_many([bad])
        await client.wait(ids[:2], timeout=30)
    ids.append(unreadable)
    address = cluster.address
    for args in (
        ["jobs", "--json"],
        *(["job", str(i), *extra] for i in ids for extra in ([], ["--json"])),
    ):
        done = corral(*args, "--connect", address)
        assert (done.returncode, "Traceback" in done.stderr) == (0, False), (args, done.stderr)
    for path in ("/api/jobs?limit=50", *(f"/api/jobs/{i}" for i in ids)):
        status, body, _ = get(f"http://127.0.0.1:{port}{path}")
        assert status == 200, (path, body)
    shown = json.loads(get(f"http://127.0.0.1:{port}/api/jobs/{ids[1]}")[1])
    assert "msgpack extension 5" in json.dumps(shown)
