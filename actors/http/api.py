"""The dashboard's JSON API: what its pages read and the actions they take, under ``/api/``.

Every read is a wire request the CLI also sends (``actors.http.bridge``): the status
(``corral status --json``), a page of jobs (``corral jobs``; filtered by state, queue, task,
idempotency key and creation time; paged by keyset: ``before`` is the last id of the page
before, so page 1,000 costs what page 1 costs), a job with its attempts and arguments
(``corral job``), a workflow (``corral dag``), schedules, limits. The throughput
chart alone reads the store directly, through the store actor's typed read: ended jobs per
minute of the last hour (``StoreBackend.ended_by_minute``), so it survives a restart.

Actions (cancel, re-queue one or all dead letters, pause or resume a schedule) are POSTs,
answered with what the scheduler did. Cross-site requests are refused by ``actors.http.
guard``. Bad input (an id that is no number or out of range, an unknown state, a page
size out of bounds, a filter too long, a time that is none) gets a 400 with one line of
text; an unknown id a 404; a scheduler that stands by or does not answer a 503. Never a
traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from aiohttp import web

from actors.http.bridge import BadRequest, Bridge, NotFound, Standby, Unavailable
from actors.scheduler.store.actor import read
from actors.scheduler.store.base import StoreBackend
from transport import protocol as wire

BRIDGE = web.AppKey("bridge", Bridge)
# Jobs per page: the page's default, and the most one request may ask for.
PAGE = 50
MAX_PAGE = 500
# The throughput chart's span: the last hour, by minute.
CHART_MINUTES = 60
MAX_ID = 2**62  # transport.payloads.JobId
# What the jobs page may filter by, and the protocol's bounds on the texts and times.
FILTERS = frozenset(
    {"state", "queue", "before", "limit", "task", "key", "created_after", "created_before"}
)
MAX_TASK = 256  # transport.payloads.TaskName
MAX_KEY = 512  # an idempotency key
LATEST = 4_102_444_800.0  # transport.payloads.UnixTime: 2100

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answers(handler: Handler) -> Handler:
    """``handler``, with the bridge's refusals turned into short HTTP answers."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound as exc:
            raise web.HTTPNotFound(text=f"404: {exc}\n") from None
        except BadRequest as exc:
            raise web.HTTPBadRequest(text=f"400: {exc}\n") from None
        except Standby:
            raise web.HTTPServiceUnavailable(
                text="503: this scheduler stands by; the leader serves the dashboard\n"
            ) from None
        except Unavailable as exc:
            raise web.HTTPServiceUnavailable(text=f"503: {exc}\n") from None

    return handle


def json_response(value: Any, status: int = 200) -> web.Response:
    """``value`` as JSON, users' payloads (results) decoded from msgpack."""

    def decode_raw(obj: Any) -> Any:
        return wire.unpack_for_view(obj) if isinstance(obj, msgspec.Raw) else obj

    body = json.dumps(msgspec.to_builtins(value, enc_hook=decode_raw), default=str)
    return web.Response(text=body, status=status, content_type="application/json")


def whole(text: str | None, name: str, low: int = 1, high: int = MAX_ID) -> int:
    """``text`` as a whole number within [low, high]; HTTPBadRequest naming ``name`` else."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 20:
        raise web.HTTPBadRequest(text=f"400: {name} must be a whole number, got {text!r}\n")
    value = int(text)
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"400: {name} must be from {low} to {high}, got {value}\n")
    return value


def text(given: str | None, name: str, most: int) -> str | None:
    """A filter's text (None if not given or empty), at most ``most`` characters."""
    if not given:
        return None
    if len(given) > most:
        raise web.HTTPBadRequest(
            text=f"400: {name} must be at most {most} characters, got {len(given)}\n"
        )
    return given


def moment(given: str | None, name: str) -> float | None:
    """A time filter: Unix seconds, or an ISO 8601 date and time (UTC unless it names its
    offset), from 1970 to 2100; None if not given."""
    if not given:
        return None
    value: float | None = None
    if len(given) <= 40:
        try:
            value = float(given)
        except ValueError:
            try:
                at = datetime.fromisoformat(given)
            except ValueError:
                pass
            else:
                value = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    if value is None or not 0 <= value <= LATEST:  # NaN too
        raise web.HTTPBadRequest(
            text=f"400: {name} must be a time from 1970 to 2100, in Unix seconds or ISO 8601 "
            f"(2024-05-01T12:00:00Z), got {given[:40]!r}\n"
        )
    return value


def bridge_of(request: web.Request) -> Bridge:
    return request.app[BRIDGE]


@answers
async def status(request: web.Request) -> web.Response:
    reply = await bridge_of(request).ask(wire.GetStatus, wire.StatusReply)
    return json_response(reply.status)


@answers
async def throughput(request: web.Request) -> web.Response:
    bridge = bridge_of(request)
    brain = bridge.current()
    now = time.time()
    first = int(now // 60) - CHART_MINUTES + 1
    rows = await read(brain.store, StoreBackend.ended_by_minute, first * 60.0)
    minutes = {
        m: {"minute": m * 60, "succeeded": 0, "failed": 0}
        for m in range(first, first + CHART_MINUTES)
    }
    for minute, state, count in rows:
        slot = minutes.get(minute)
        if slot is not None:
            slot["succeeded" if state == "SUCCEEDED" else "failed"] += count
    return json_response({"minutes": list(minutes.values())})


@answers
async def jobs(request: web.Request) -> web.Response:
    query = request.query
    unknown = set(query) - FILTERS
    if unknown:
        raise web.HTTPBadRequest(text=f"400: unknown filter {sorted(unknown)[0]!r}\n")
    state = query.get("state") or None
    queue = query.get("queue") or None
    before = whole(query["before"], "before") if query.get("before") else None
    limit = whole(query["limit"], "limit", 1, MAX_PAGE) if query.get("limit") else PAGE
    task = text(query.get("task"), "task", MAX_TASK)
    key = text(query.get("key"), "key", MAX_KEY)
    after = moment(query.get("created_after"), "created_after")
    until = moment(query.get("created_before"), "created_before")
    if after is not None and until is not None and after >= until:
        raise web.HTTPBadRequest(text="400: created_after must be before created_before\n")
    reply = await bridge_of(request).ask(
        lambda rid: wire.ListJobs(rid, state, queue, limit + 1, before, task, key, after, until),
        wire.JobList,
    )
    page = reply.jobs[:limit]
    more = len(reply.jobs) > limit
    return json_response({"jobs": page, "next": page[-1].job_id if more and page else None})


@answers
async def job(request: web.Request) -> web.Response:
    job_id = whole(request.match_info["job_id"], "job id")
    reply = await bridge_of(request).ask(lambda rid: wire.GetJob(rid, job_id), wire.JobReply)
    if reply.job is None:
        raise web.HTTPNotFound(text=f"404: no job {job_id}\n")
    return json_response(reply.job)


@answers
async def workflow(request: web.Request) -> web.Response:
    workflow_id = whole(request.match_info["workflow_id"], "workflow id")
    reply = await bridge_of(request).ask(
        lambda rid: wire.GetWorkflow(rid, workflow_id), wire.WorkflowReply
    )
    if reply.workflow is None:
        raise web.HTTPNotFound(text=f"404: no workflow {workflow_id}\n")
    return json_response(reply.workflow)


@answers
async def schedules(request: web.Request) -> web.Response:
    reply = await bridge_of(request).ask(wire.ListSchedules, wire.ScheduleReply)
    return json_response(reply.schedules)


@answers
async def limits(request: web.Request) -> web.Response:
    reply = await bridge_of(request).ask(wire.ListLimits, wire.LimitsReply)
    return json_response(reply.limits)


# ------------------------------------------------------------------ actions


@answers
async def cancel(request: web.Request) -> web.Response:
    job_id = whole(request.match_info["job_id"], "job id")
    reply = await bridge_of(request).ask(
        lambda rid: wire.CancelJobs(rid, [job_id]), wire.CancelReply
    )
    (_, state), *_ = reply.statuses
    if state == "NOT_FOUND":
        raise web.HTTPNotFound(text=f"404: no job {job_id}\n")
    return json_response({"job_id": job_id, "status": state})


@answers
async def requeue(request: web.Request) -> web.Response:
    job_id = whole(request.match_info["job_id"], "job id")
    reply = await bridge_of(request).ask(lambda rid: wire.Requeue(rid, [job_id]), wire.RequeueReply)
    if reply.skipped:
        _, why = reply.skipped[0]
        if why == "no such job":
            raise web.HTTPNotFound(text=f"404: no job {job_id}\n")
        raise web.HTTPConflict(text=f"409: job {job_id} {why}\n")
    return json_response({"requeued": reply.job_ids, "skipped": []})


@answers
async def requeue_all(request: web.Request) -> web.Response:
    reply = await bridge_of(request).ask(
        lambda rid: wire.Requeue(rid, all_failed=True), wire.RequeueReply
    )
    return json_response({"requeued": reply.job_ids, "skipped": reply.skipped})


@answers
async def change_schedule(request: web.Request) -> web.Response:
    name, given = request.match_info["name"], request.match_info["action"]
    action: Literal["pause", "resume"]
    if given == "pause":
        action = "pause"
    elif given == "resume":
        action = "resume"
    else:
        raise web.HTTPNotFound(text=f"404: no action {given!r} (pause or resume)\n")
    reply = await bridge_of(request).ask(
        lambda rid: wire.ChangeSchedule(rid, name, action), wire.ScheduleReply
    )
    return json_response(reply.schedules)


def add_routes(app: web.Application) -> None:
    add = app.router
    add.add_get("/api/status", status)
    add.add_get("/api/throughput", throughput)
    add.add_get("/api/jobs", jobs)
    add.add_get("/api/jobs/{job_id}", job)
    add.add_get("/api/workflows/{workflow_id}", workflow)
    add.add_get("/api/schedules", schedules)
    add.add_get("/api/limits", limits)
    add.add_post("/api/jobs/{job_id}/cancel", cancel)
    add.add_post("/api/jobs/{job_id}/requeue", requeue)
    add.add_post("/api/dead-letters/requeue", requeue_all)
    add.add_post("/api/schedules/{name}/{action}", change_schedule)
