"""The web dashboard used as a person would, in a real headless Chromium (Debian's
``chromium``, driven by Playwright), against real scheduler and worker processes: the
overview's counts are ``corral status --json``'s; a job's page turns from QUEUED to
SUCCEEDED by itself when a worker comes; a failed job's page shows its error, and re-queued
from the dead-letter page it succeeds; a workflow's graph shows each step's state; the
jobs page filters by task and time and finds a job by its idempotency key, whose page
shows its arguments and links its workflow; the queues page names the oldest waiting job;
with CURVE keys the dashboard acts as an admin and, bound beyond loopback, asks for its
token; a standby on PostgreSQL says it stands by and names the leader.

One browser for the module; each test its own cluster and browser context. A screenshot
of every page goes to tests/artefacts/dashboard/ (not committed; docs/ holds the README's).
Without Playwright or Chromium the tests skip on a developer's machine and fail in CI
(``give_up``)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actors.client import job_spec
from tests.e2e.test_http import free_port, until_listening
from tests.helpers.cluster import Cluster
from tests.helpers.procs import ROOT, Procs, corral, free_address, give_up
from tests.helpers.waiting import until_workers

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = os.environ.get("CORRAL_TEST_CHROMIUM", "/usr/bin/chromium")
TASKS = "tests.helpers.dashboard_tasks"
ARTEFACTS = Path(ROOT) / "tests" / "artefacts" / "dashboard"
# How long the page may take to show what the scheduler did: a worker process starts and
# runs the job on a loaded two-core machine; the page itself follows within a second.
SHOWN_MS = 30_000


def chromium_installed() -> bool:
    return os.path.exists(CHROMIUM)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        give_up("Playwright is not installed (pip install -e '.[test]')")
    if not chromium_installed():
        give_up(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        except Exception as exc:
            give_up(f"Chromium at {CHROMIUM} cannot start: {str(exc).splitlines()[0]}")
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1100, "height": 760}, locale="en-US")
    context.set_default_timeout(SHOWN_MS)
    opened = await context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())  # every confirm: yes
    yield opened
    await context.close()


def dashboard(cluster: Cluster, *workers: str) -> str:
    """Start the cluster's scheduler with the dashboard, and ``workers``; its URL."""
    port = free_port()
    cluster.start("--http-port", str(port))
    until_listening(port, cluster.scheduler)
    for name in workers:
        cluster.worker(name, 2, tasks=TASKS)
    return f"http://127.0.0.1:{port}"


async def screenshot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


async def test_the_overview_counts_are_corral_status_json_and_every_page_opens(
    cluster: Cluster, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    url = dashboard(cluster, "w0")
    declined = tmp_path / "declined"
    declined.touch()
    async with cluster.client() as client:
        await until_workers(client, {"w0"})
        paid = await client.submit_many([job_spec("charge", [f"inv-{i}"]) for i in range(4)])
        failed = await client.submit("charge_unless", ["inv-9", str(declined)], max_retries=0)
        await client.wait([*paid, failed], timeout=60)
        await client.submit_many([job_spec("charge", ["later"], queue="nightly")] * 3)
    status = json.loads(corral("status", "--json", "--connect", cluster.address).stdout)
    assert status["jobs"]["SUCCEEDED"] == 4
    await page.goto(url)
    for state, count in status["jobs"].items():
        await expect(page.locator(f'#counts [data-state="{state}"] .n')).to_have_text(f"{count:,}")
    await expect(page.locator("#dead-letters")).to_have_text("1")
    await expect(page.locator("#live")).to_have_text("live")
    await screenshot(page, "overview")
    for path, name, shows in [
        ("/queues", "queues", "nightly"),
        ("/workers", "workers", "w0"),
        ("/jobs", "jobs", "charge_unless"),
        ("/jobs?state=QUEUED", "jobs-queued", "nightly"),
        ("/dead-letters", "dead-letters", "card declined for invoice inv-9"),
        ("/schedules", "schedules", "No schedules."),
    ]:
        await page.goto(url + path)
        await expect(page.locator("main")).to_contain_text(shows)
        await screenshot(page, name)
    await page.goto(url + "/jobs/999999")
    await expect(page.locator("main")).to_contain_text("no job 999999")
    await narrow_and_dark(page, url)


async def test_the_workers_page_shows_how_many_slots_are_for_prefetch(
    cluster: Cluster, page: Any
) -> None:
    from playwright.async_api import expect

    url = dashboard(cluster)
    cluster.worker("pf", 2, "--prefetch", "3", tasks=TASKS)
    async with cluster.client() as client:
        await until_workers(client, {"pf"})
    await page.goto(url + "/workers")
    await expect(page.locator('[data-worker="pf"]')).to_contain_text("0/5 (3 prefetch)")


async def narrow_and_dark(page: Any, url: str) -> None:
    """A phone-sized window with the system in dark mode: dark colours, nothing wider
    than the window (tables scroll inside their own box)."""
    from playwright.async_api import expect

    await page.set_viewport_size({"width": 380, "height": 760})
    await page.emulate_media(color_scheme="dark")
    for path, name in [("/", "narrow-dark-overview"), ("/jobs", "narrow-dark-jobs")]:
        await page.goto(url + path)
        await expect(page.locator("#live")).to_have_text("live")
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 24, 27)", background
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px wider than a narrow window"
        await screenshot(page, name)


async def test_a_job_page_turns_from_queued_to_succeeded_without_a_reload(
    cluster: Cluster, page: Any
) -> None:
    from playwright.async_api import expect

    url = dashboard(cluster)  # no worker yet: the job waits QUEUED
    async with cluster.client() as client:
        job_id = await client.submit("charge", ["inv-42"])
    await page.goto(f"{url}/jobs/{job_id}")
    await expect(page.locator("h1")).to_contain_text("QUEUED")
    await expect(page.locator("#live")).to_have_text("live")
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads
    cluster.worker("w0", 2, tasks=TASKS)
    await expect(page.locator("h1")).to_contain_text("SUCCEEDED")
    await expect(page.locator("#result")).to_contain_text('"paid"')
    assert await page.evaluate("window.sameDocument === true"), "the page was reloaded"
    await screenshot(page, "job")


async def test_a_failed_job_shows_its_error_and_requeued_from_dead_letters_it_succeeds(
    cluster: Cluster, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    url = dashboard(cluster, "w0")
    declined = tmp_path / "declined"
    declined.touch()
    async with cluster.client() as client:
        job_id = await client.submit("charge_unless", ["inv-7", str(declined)], max_retries=0)
        await client.wait([job_id], timeout=60)
    await page.goto(f"{url}/jobs/{job_id}")
    await expect(page.locator("h1")).to_contain_text("FAILED")
    await expect(page.locator("#error")).to_contain_text("Traceback")
    await expect(page.locator("#error")).to_contain_text("ValueError: card declined for inv")
    await screenshot(page, "job-failed")
    declined.unlink()  # the card works now
    await page.goto(f"{url}/dead-letters")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    await expect(row).to_contain_text("card declined")
    await screenshot(page, "dead-letters-one")
    await row.get_by_role("button", name="Re-queue").click()  # confirmed by the dialog
    await expect(page.locator("#flash")).to_contain_text(f"Job {job_id} re-queued")
    await expect(row).to_have_count(0)
    await page.goto(f"{url}/jobs/{job_id}")
    await expect(page.locator("h1")).to_contain_text("SUCCEEDED")
    await expect(page.locator("#result")).to_contain_text("inv-7")


async def test_a_workflow_page_draws_each_steps_state(
    cluster: Cluster, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    url = dashboard(cluster, "w0")
    declined = tmp_path / "declined"
    declined.touch()
    steps = {
        "fetch": (job_spec("charge", ["fetch"]), []),
        "charge_eu": (job_spec("charge", ["eu"]), ["fetch"]),
        "charge_us": (job_spec("charge_unless", ["us", str(declined)], max_retries=0), ["fetch"]),
        "ledger": (job_spec("charge", ["ledger"]), ["charge_eu", "charge_us"]),
        "email": (job_spec("charge", ["email"]), ["charge_eu"]),
    }
    async with cluster.client() as client:
        workflow_id, ids = await client.submit_workflow(steps, name="month-end")
        await client.wait(ids.values(), timeout=60)
    await page.goto(f"{url}/workflows/{workflow_id}")
    expected = {
        "fetch": "SUCCEEDED",
        "charge_eu": "SUCCEEDED",
        "charge_us": "FAILED",
        "ledger": "UPSTREAM_FAILED",
        "email": "SUCCEEDED",
    }
    for step, state in expected.items():
        await expect(page.locator(f'svg g.node[data-step="{step}"]')).to_have_attribute(
            "data-state", state
        )
        await expect(page.locator(f'tr[data-step="{step}"]')).to_contain_text(state)
    assert await page.locator("svg path.edge").count() == 5
    await screenshot(page, "workflow")


async def test_filter_jobs_by_task_find_one_by_its_key_and_read_its_arguments_and_workflow(
    cluster: Cluster, page: Any
) -> None:
    from playwright.async_api import expect

    url = dashboard(cluster)  # no worker: everything waits QUEUED, which is all this needs
    async with cluster.client() as client:
        first = await client.submit("charge", ["inv-1"])
        refunds = [
            await client.submit("refund", [f"inv-{i}"], {"reason": "duplicate"}) for i in (2, 3)
        ]
        wanted = await client.submit(
            "charge", ["inv-4", 12.5], {"currency": "EUR"}, idempotency_key="order-1004"
        )
        workflow_id, steps = await client.submit_workflow(
            {
                "fetch": (job_spec("charge", ["fetch"]), []),
                "send": (job_spec("mail", []), ["fetch"]),
            },
            name="month-end",
        )
    await page.goto(f"{url}/jobs")
    await page.locator('#filters input[name="task"]').fill("refund")
    await page.locator("#filters button").click()
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(2)
    assert sorted(
        int(r) for r in await rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)")
    ) == (sorted(refunds))
    await expect(page.locator('#filters input[name="task"]')).to_have_value("refund")
    await screenshot(page, "jobs-filtered")
    await page.locator('#filters input[name="created_after"]').fill("2099-01-01T00:00:00")
    await page.locator("#filters button").click()
    await expect(page.locator("#results")).to_contain_text("No job matches.")

    await page.locator('#search input[name="q"]').fill("order-1004")
    await page.locator("#search button").click()
    await page.wait_for_url(f"{url}/jobs/{wanted}")
    await expect(page.locator("#args")).to_contain_text('"inv-4"')
    await expect(page.locator("#args")).to_contain_text("12.5")
    await expect(page.locator("#kwargs")).to_contain_text('"currency": "EUR"')
    await screenshot(page, "job-arguments")

    await page.goto(f"{url}/jobs/{steps['send']}")
    await expect(page.locator("main dl")).to_contain_text("step send")
    await page.locator("#workflow").click()
    await page.wait_for_url(f"{url}/workflows/{workflow_id}")
    await expect(page.locator('svg g.node[data-step="send"]')).to_have_attribute(
        "data-state", "PENDING"
    )

    await page.goto(f"{url}/queues")
    await expect(page.locator('[data-oldest="default"]')).to_contain_text(f"#{first}")
    await screenshot(page, "queues-oldest")
    bad = await page.goto(f"{url}/api/jobs?created_after=yesterday")
    assert bad is not None
    assert bad.status == 400
    assert "created_after must be a time" in await bad.text()


async def test_with_keys_it_acts_as_an_admin_and_beyond_loopback_asks_for_its_token(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    """CURVE on, the dashboard bound to every interface with a token: a browser given the
    token (as the Basic password it asks for) sees a client key's jobs and may act as an
    admin (re-queue dead letters: no client key may); without it, 401 on every path."""
    import aiohttp
    from playwright.async_api import expect

    from tests.e2e.test_http import TOKEN, token_file
    from tests.e2e.test_keys import client_as

    cluster.use_keys()
    cluster.key("alice", "clients")
    port = free_port()
    token = token_file(tmp_path)
    cluster.start(
        "--http-port", str(port), "--http-bind", "0.0.0.0", "--http-token-file", str(token)
    )
    until_listening(port, cluster.scheduler)
    url = f"http://127.0.0.1:{port}"
    async with client_as(cluster, "alice") as alice:
        hers = await alice.submit("charge", ["inv-alice"], idempotency_key="alice-1")
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/jobs", "/api/status", "/api/jobs", "/static/app.js", "/nowhere"):
            async with http.get(url + path) as response:
                assert response.status == 401, path
        bearer = {"Authorization": f"Bearer {TOKEN}", "X-Corral-Action": "1"}
        async with http.post(url + "/api/dead-letters/requeue", headers=bearer) as response:
            assert response.status == 200, await response.text()  # an admin's request
    context = await browser.new_context(http_credentials={"username": "me", "password": TOKEN})
    try:
        opened = await context.new_page()
        await opened.goto(f"{url}/jobs")
        await expect(opened.locator(f'tr[data-job-id="{hers}"]')).to_contain_text("charge")
        await expect(opened.locator("#live")).to_have_text("live")
        await opened.goto(f"{url}/jobs/{hers}")
        await expect(opened.locator("#args")).to_contain_text("inv-alice")
    finally:
        await context.close()


async def test_a_standby_on_postgresql_says_it_stands_by_and_names_the_leader(
    procs: Procs, postgres_dsn: str, page: Any
) -> None:
    """Two schedulers on one PostgreSQL database, each serving its dashboard: the
    leader's overview names itself and its term; every page of the standby's says it
    stands by (503) and names the leader, whose dashboard to open."""
    from playwright.async_api import expect

    from tests.helpers.leaders import until_leading, until_standby_names

    leader, standby = free_address(), free_address()
    ports = free_port(), free_port()
    first = procs.scheduler(leader, postgres_dsn, "--http-port", str(ports[0]))
    await until_leading([leader])
    second = procs.scheduler(standby, postgres_dsn, "--http-port", str(ports[1]))
    await until_standby_names(standby, leader)
    until_listening(ports[0], first)
    until_listening(ports[1], second)
    await page.goto(f"http://127.0.0.1:{ports[0]}/")
    await expect(page.locator("main")).to_contain_text(f"Leader {leader}, term 1")
    for path in ("/", "/jobs", "/jobs/1"):
        response = await page.goto(f"http://127.0.0.1:{ports[1]}{path}")
        assert response is not None
        assert response.status == 503, path
        await expect(page.locator("h1")).to_have_text("Standing by")
        await expect(page.locator("main")).to_contain_text(f"the leader is {leader} (term 1)")
    await screenshot(page, "standby")
