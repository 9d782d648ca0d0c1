"""The dashboard's HTTP side in-process (actors/http/pages.py, api.py, live.py, guard.py,
bridge.py): a real Brain on an in-memory store and transport, a real HTTP server on
loopback, real requests. What the pages read is what the CLI's requests answer; bad input
gets one line and a 4xx; actions need the dashboard's header and a same-site origin; the
event stream is a bounded subscription that ends with its page; a standby names the
leader. (tests/e2e/test_dashboard.py drives it all in a real browser.)"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest

from actors.client import AsyncClient
from actors.config import SchedulerConfig
from actors.http import live
from actors.http.pages import install
from actors.http.server import HttpServer
from actors.http.settings import HttpSettings
from actors.lifecycle import JobState
from actors.scheduler.brain import Brain
from actors.scheduler.job import Job
from actors.scheduler.ops import Ops
from actors.scheduler.store.memory import MemoryStore
from tests.actors.test_http_server import TOKEN, free_port
from tests.helpers.job_rows import stored_job
from tests.helpers.waiting import until
from transport import protocol as wire

_n = itertools.count()
ACTION = {"X-Corral-Action": "1"}


async def store_with(jobs: list[Job], attempts: list[tuple[Any, ...]] | None = None) -> MemoryStore:
    store = MemoryStore()
    await store.open()
    await store.commit(Ops(inserts=jobs, attempts=attempts or []))
    await store.close()
    return store


@dataclass
class Dashboard:
    brain: Brain | None
    url: str
    session: aiohttp.ClientSession
    server: HttpServer

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.session.get(self.url + path, **kw) as response:
            return response.status, await response.text()

    async def json(self, path: str) -> Any:
        status, text = await self.get(path)
        assert status == 200, text
        return json.loads(text)

    async def post(self, path: str, headers: dict[str, str] = ACTION) -> tuple[int, str]:
        async with self.session.post(self.url + path, headers=headers) as response:
            return response.status, await response.text()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """serve(store=..., token=..., brain=False, leader=...) -> Dashboard, stopped after."""
    stack: list[Any] = []

    async def start(
        store: MemoryStore | None = None,
        token: str | None = None,
        standby: bool = False,
        leader: tuple[str, int] = ("", 0),
    ) -> Dashboard:
        brain = None
        if not standby:
            config = SchedulerConfig(bind=f"mem://dashboard-{next(_n)}", db="unused.db")
            brain = Brain(config, store or MemoryStore())
            await brain.start()
            stack.append(brain.close)
        settings = HttpSettings("127.0.0.1", free_port(), token.encode() if token else None)
        server = HttpServer(settings, lambda: None)
        install(server, lambda: brain, lambda: leader)
        await server.start()
        stack.append(server.stop)
        session = aiohttp.ClientSession()
        stack.append(session.close)
        return Dashboard(brain, settings.url, session, server)

    yield start
    for close in reversed(stack):
        await close()


async def test_the_status_is_what_the_cli_reads_and_every_page_is_served(serve: Any) -> None:
    store = await store_with(
        [stored_job(1, JobState.SUCCEEDED), stored_job(2, JobState.FAILED, error="boom")]
    )
    dash = await serve(store)
    assert dash.brain is not None
    async with AsyncClient(dash.brain.address) as client:
        await client.submit("tests.task", queue="q1")
        cli = await client.status()
    status = await dash.json("/api/status")
    assert status["jobs"] == cli.jobs
    assert status["jobs"]["QUEUED"] == 1
    assert status["dead_letters"] == 1
    for path in ("/", "/queues", "/workers", "/jobs", "/dead-letters", "/schedules", "/jobs/2"):
        code, html = await dash.get(path)
        assert (code, "/static/app.js" in html) == (200, True), path
    for name in ("app.js", "style.css"):
        code, _ = await dash.get(f"/static/{name}")
        assert code == 200


async def test_jobs_page_through_by_keyset_without_gaps_or_repeats(serve: Any) -> None:
    jobs = [stored_job(i, JobState.SUCCEEDED if i % 2 else JobState.FAILED) for i in range(1, 12)]
    dash = await serve(await store_with(jobs))
    seen: list[int] = []
    path = "/api/jobs?limit=4"
    while True:
        page = await dash.json(path)
        seen += [j["job_id"] for j in page["jobs"]]
        if page["next"] is None:
            break
        path = f"/api/jobs?limit=4&before={page['next']}"
    assert seen == list(range(11, 0, -1))
    failed = await dash.json("/api/jobs?state=FAILED&limit=2")
    assert [j["job_id"] for j in failed["jobs"]] == [10, 8]
    assert failed["next"] == 8


async def test_a_job_shows_its_attempts_and_full_error(serve: Any) -> None:
    error = "Traceback (most recent call last):\n  ...\nValueError: card declined"
    store = await store_with(
        [stored_job(5, JobState.FAILED, error=error, attempts=1, token=1)],
        [(5, 1, "w1", 1.0, 2.0, "error", error)],
    )
    dash = await serve(store)
    job = await dash.json("/api/jobs/5")
    assert (job["status"], job["error"]) == ("FAILED", error)
    assert [(a["token"], a["worker"], a["outcome"]) for a in job["history"]] == [(1, "w1", "error")]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/jobs/77", 404, "no job 77"),
        ("/api/jobs/abc", 400, "job id must be a whole number"),
        ("/api/jobs/0", 400, "job id must be from 1"),
        ("/api/jobs/" + "9" * 30, 400, "job id must be a whole number"),
        ("/api/jobs?before=99999999999999999999", 400, "before must be from 1"),
        ("/api/jobs?before=-3", 400, "before must be a whole number"),
        ("/api/jobs?limit=100000", 400, "limit must be from 1 to 500"),
        ("/api/jobs?state=DONE", 400, "unknown status 'DONE'"),
        ("/api/jobs?queue=" + "q" * 100, 400, "Expected `str` of length <= 64"),
        ("/api/jobs?colour=red", 400, "unknown filter 'colour'"),
        ("/api/workflows/9", 404, "no workflow 9"),
        ("/api/workflows/x", 400, "workflow id must be a whole number"),
        ("/jobs/77", 404, "no job 77"),
        ("/jobs/%F0%9F%90%8D", 400, "must be a whole number"),
        ("/workflows/3", 404, "no workflow 3"),
        ("/static/../../etc/passwd", 404, ""),
        ("/static/secret.py", 404, "no file"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_never_a_traceback(
    serve: Any, path: str, status: int, says: str
) -> None:
    dash = await serve()
    code, text = await dash.get(path)
    assert code == status, text
    assert says in text
    assert "Traceback" not in text


async def test_actions_requeue_and_cancel_through_the_schedulers_own_requests(serve: Any) -> None:
    store = await store_with(
        [stored_job(1, JobState.SUCCEEDED), stored_job(2, JobState.FAILED, error="boom")]
    )
    dash = await serve(store)
    assert (await dash.post("/api/jobs/1/requeue"))[0] == 409
    assert (await dash.post("/api/jobs/9/requeue"))[0] == 404
    code, text = await dash.post("/api/jobs/2/requeue")
    assert (code, json.loads(text)["requeued"]) == (200, [2])
    assert (await dash.json("/api/jobs/2"))["status"] == "QUEUED"
    code, text = await dash.post("/api/jobs/2/cancel")
    assert (code, json.loads(text)["status"]) == (200, "CANCELLED")
    assert (await dash.post("/api/jobs/9/cancel"))[0] == 404
    assert (await dash.post("/api/schedules/nightly/pause"))[0] == 404
    assert (await dash.post("/api/schedules/nightly/explode"))[0] == 404
    assert (await dash.post("/api/dead-letters/requeue"))[0] == 200


async def test_actions_from_other_sites_or_without_the_header_are_refused(serve: Any) -> None:
    store = await store_with([stored_job(2, JobState.FAILED, error="boom")])
    dash = await serve(store)
    code, text = await dash.post("/api/jobs/2/requeue", headers={})
    assert (code, "X-Corral-Action" in text) == (403, True)
    evil = {**ACTION, "Origin": "https://evil.example"}
    assert (await dash.post("/api/jobs/2/requeue", headers=evil))[0] == 403
    code, _ = await dash.get("/api/status", headers={"Host": "rebound.example:80"})
    assert code == 421
    assert (await dash.json("/api/jobs/2"))["status"] == "FAILED", "nothing changed"
    same = {**ACTION, "Origin": dash.url}
    assert (await dash.post("/api/jobs/2/requeue", headers=same))[0] == 200


async def test_with_a_token_the_browser_may_give_it_as_a_basic_password(serve: Any) -> None:
    dash = await serve(token=TOKEN)
    code, _ = await dash.get("/api/status")
    assert code == 401
    async with dash.session.get(dash.url + "/", headers={"Accept": "text/html"}) as response:
        assert response.status == 401
        assert response.headers.getall("WWW-Authenticate")[1].startswith('Basic realm="corral"')
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    code, _ = await dash.get("/api/status", headers={"Authorization": f"Basic {basic}"})
    assert code == 200
    wrong = base64.b64encode(b"anyone:nope").decode()
    assert (await dash.get("/", headers={"Authorization": f"Basic {wrong}"}))[0] == 401
    assert (await dash.get("/", headers={"Authorization": "Basic %%%"}))[0] == 401
    bearer = {"Authorization": f"Bearer {TOKEN}", "Host": "dashboard.example"}
    assert (await dash.get("/api/status", headers=bearer))[0] == 200, "any host, with a token"


async def test_a_standby_names_the_leader_on_every_page(serve: Any) -> None:
    dash = await serve(standby=True, leader=("tcp://10.0.0.7:5555", 4))
    code, html = await dash.get("/jobs")
    assert code == 503
    assert "stands by" in html
    assert "tcp://10.0.0.7:5555 (term 4)" in html
    code, text = await dash.get("/api/status")
    assert (code, "stands by" in text) == (503, True)
    assert (await dash.get("/api/events"))[0] == 503


async def test_throughput_counts_jobs_ended_in_the_last_hour_by_minute(serve: Any) -> None:
    import time

    now = time.time()
    store = await store_with(
        [
            stored_job(1, JobState.SUCCEEDED, finished_at=now - 30),
            stored_job(2, JobState.FAILED, finished_at=now - 30, error="x"),
            stored_job(3, JobState.SUCCEEDED, finished_at=now - 7200),  # before the hour
        ]
    )
    dash = await serve(store)
    minutes = (await dash.json("/api/throughput"))["minutes"]
    assert len(minutes) == 60
    assert sum(m["succeeded"] for m in minutes) == 1
    assert sum(m["failed"] for m in minutes) == 1


async def test_the_event_stream_carries_transitions_and_ends_its_subscription(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stream notices a page that went away at its next keepalive line (every 15 s in
    # production): the same write, 0.2 s apart, so the test does not wait 15 s for it.
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.2)
    dash = await serve()
    assert dash.brain is not None
    hub = dash.brain.scheduler.events
    async with dash.session.get(dash.url + "/api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readline() == b"retry: 2000\n"
        await until(lambda: subscribed(hub, 1))
        async with AsyncClient(dash.brain.address) as client:
            job_id = await client.submit("tests.task")
        seen: list[dict[str, Any]] = []
        while not any(e["job_id"] == job_id and e["status"] == "QUEUED" for e in seen):
            line = await response.content.readline()
            if line.startswith(b"data: "):
                seen += json.loads(line[6:])["events"]
    await until(lambda: subscribed(hub, 0))  # the page went away: its subscription ended


async def subscribed(hub: Any, count: int) -> bool:
    return len(hub.subscriptions) == count


async def test_a_job_shows_its_arguments_and_workflow_and_withholds_huge_ones(
    serve: Any,
) -> None:
    pack = msgspec.msgpack.encode
    huge = "x" * (wire.MAX_SHOWN_PAYLOAD + 1)
    store = await store_with(
        [
            stored_job(3, JobState.QUEUED, workflow_id=None),
            msgspec.structs.replace(
                stored_job(4, JobState.SUCCEEDED, workflow_id=2, step="fetch"),
                args=pack(["inv-1", 2.5, None]),
                kwargs=pack({"to": "ünï", "blob": b"\x00\xff"}),
            ),
            msgspec.structs.replace(stored_job(5, JobState.QUEUED), args=pack([huge])),
        ]
    )
    dash = await serve(store)
    job = await dash.json("/api/jobs/4")
    assert (job["args"], job["kwargs"]["to"]) == (["inv-1", 2.5, None], "ünï")
    assert (job["workflow_id"], job["step"]) == (2, "fetch")
    assert job["payload_bytes"] == len(pack(["inv-1", 2.5, None])) + len(
        pack({"to": "ünï", "blob": b"\x00\xff"})
    )
    plain = await dash.json("/api/jobs/3")
    assert (plain["args"], plain["kwargs"], plain["workflow_id"]) == ([], {}, None)
    withheld = await dash.json("/api/jobs/5")
    assert (withheld["args"], withheld["payload_bytes"]) == (None, len(pack([huge])) + 1)
    listed = await dash.json("/api/jobs")
    assert {j["job_id"]: j["args"] for j in listed["jobs"]} == {3: None, 4: None, 5: None}, (
        "a listing carries no arguments"
    )


async def test_jobs_filter_by_task_key_and_time_paged_by_keyset(serve: Any) -> None:
    jobs = [
        stored_job(
            i,
            JobState.SUCCEEDED,
            idempotency_key=f"order-{i}",
            task="charge" if i % 2 else "mail",
            created_at=1_700_000_000.0 + i * 60,
        )
        for i in range(1, 21)
    ]
    dash = await serve(await store_with(jobs))

    async def ids(query: str) -> list[int]:
        seen: list[int] = []
        path = f"/api/jobs?limit=3&{query}"
        while True:
            page = await dash.json(path)
            seen += [j["job_id"] for j in page["jobs"]]
            if page["next"] is None:
                return seen
            path = f"/api/jobs?limit=3&{query}&before={page['next']}"

    assert await ids("task=charge") == list(range(19, 0, -2))
    assert await ids("key=order-7") == [7]
    assert await ids("key=order-77") == []
    # 1_700_000_000 is 2023-11-14T22:13:20Z; job i was created i minutes after it.
    assert await ids("created_after=1700000300&created_before=1700000600") == [9, 8, 7, 6, 5]
    iso = "created_after=2023-11-14T22:18:20Z&created_before=2023-11-14T23:23:20%2B01:00"
    assert await ids(iso) == [9, 8, 7, 6, 5]
    assert await ids("task=mail&created_after=2023-11-14T22:28:20") == [20, 18, 16]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("task=" + "t" * 300, "task must be at most 256 characters, got 300"),
        ("key=" + "k" * 600, "key must be at most 512 characters, got 600"),
        ("created_after=yesterday", "created_after must be a time from 1970 to 2100"),
        ("created_before=-5", "created_before must be a time from 1970 to 2100"),
        ("created_after=nan", "created_after must be a time"),
        ("created_after=1e300", "created_after must be a time"),
        ("created_after=" + "9" * 60, "created_after must be a time"),
        ("created_after=20&created_before=10", "created_after must be before created_before"),
    ],
)
async def test_bad_filters_get_a_clear_400_and_change_nothing(
    serve: Any, query: str, says: str
) -> None:
    dash = await serve(await store_with([stored_job(1, JobState.QUEUED)]))
    code, text = await dash.get(f"/api/jobs?{query}")
    assert (code, text.count("\n")) == (400, 1), text
    assert says in text
    assert [j["job_id"] for j in (await dash.json("/api/jobs"))["jobs"]] == [1]


async def test_the_queues_name_their_oldest_waiting_job_and_its_age(serve: Any) -> None:
    dash = await serve()
    assert dash.brain is not None
    async with AsyncClient(dash.brain.address) as client:
        first = await client.submit("tests.task", queue="q1")
        await client.submit("tests.task", queue="q1", priority=5)  # served first, not oldest
        other = await client.submit("tests.task", queue="q2")

        async def shown() -> bool:
            queues = (await dash.json("/api/status"))["queues"]
            return {n: q["oldest_job"] for n, q in queues.items()} == {"q1": first, "q2": other}

        await until(shown)
        queues = (await dash.json("/api/status"))["queues"]
        assert queues["q1"]["oldest_s"] >= 0
        assert queues["q1"]["ready"] == 2
