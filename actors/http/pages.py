"""The dashboard's pages and files: the HTML of each page, its script and style sheet, and
``install``, which puts the whole dashboard (pages, ``api``, ``live``, ``guard``) on the
process's HTTP server.

Every page is the same small HTML document (``static/index.html``); its script
(``static/app.js``) reads the page's path, asks the JSON API for what the page shows, and
keeps it current from the event stream. The files ship inside the package and are read
once at start (no CDN, no build step; the dashboard works on a network without internet).

A page naming a job or workflow checks that it exists first, so a wrong link gets a 404
page saying so (a malformed id a 400). A standby scheduler (PostgreSQL) answers every page
with 503 and a page naming the leader; a scheduler still starting, with 503 and a line.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from actors.http import api, live
from actors.http.bridge import Bridge, NotFound, Standby, Unavailable
from actors.http.guard import guard
from transport import protocol as wire

if TYPE_CHECKING:
    from actors.http.server import HttpServer
    from actors.scheduler.brain import Brain

FILES = {  # served name -> content type
    "app.js": "text/javascript",
    "style.css": "text/css",
}
# The pages and their titles, in the menu's order ("" is the overview, at /).
MENU = {
    "": "Overview",
    "queues": "Queues",
    "workers": "Workers",
    "jobs": "Jobs",
    "dead-letters": "Dead letters",
    "schedules": "Schedules",
}
# Files change only with the package; a browser may keep them this long (seconds).
FILE_CACHE_S = 300

STATIC = web.AppKey("static", dict)
LEADER = web.AppKey[Callable[[], tuple[str, int]]]("leader")


def install(
    server: HttpServer,
    brain: Callable[[], Brain | None],
    leader: Callable[[], tuple[str, int]] = lambda: ("", 0),
) -> None:
    """Serve the dashboard on ``server`` (before it starts): ``brain`` is the current
    term's Brain (None while standing by), ``leader`` whom a standby names."""
    app = server.app
    app.middlewares.append(guard(token_required=server.settings.token is not None))
    app[api.BRIDGE] = Bridge(brain)
    app[LEADER] = leader
    folder = resources.files("actors.http") / "static"
    app[STATIC] = {name: (folder / name).read_bytes() for name in [*FILES, "index.html"]}
    router = app.router
    for path in MENU:
        router.add_get(f"/{path}", page)
    router.add_get("/jobs/{job_id}", job_page)
    router.add_get("/workflows/{workflow_id}", workflow_page)
    router.add_get("/static/{name}", static)
    api.add_routes(app)
    live.add_routes(app)


def shell(request: web.Request, status: int = 200) -> web.Response:
    """The page's HTML (the script fills it in)."""
    body = request.app[STATIC]["index.html"]
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8")


def notice(title: str, text: str, status: int) -> web.Response:
    """A page of one message: a 4xx or a standby's 503."""
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · corral</title>"
        '<link rel=stylesheet href="/static/style.css">'
        '<body><header><a class=brand href="/">corral</a></header>'
        f"<main><h1>{html.escape(title)}</h1><p class=notice>{html.escape(text)}</p>"
        '<p><a href="/">Overview</a></p></main></body></html>'
    )
    return web.Response(text=page, status=status, content_type="text/html")


def standby_page(request: web.Request) -> web.Response:
    address, term = request.app[LEADER]()
    leader = f"the leader is {address} (term {term})" if address else "a leader is being elected"
    return notice(
        "Standing by",
        f"This scheduler stands by (PostgreSQL): it serves no jobs, {leader}. Open the "
        "leader's dashboard; this one takes over if the leader's term ends.",
        503,
    )


async def page(request: web.Request) -> web.Response:
    bridge = request.app[api.BRIDGE]
    try:
        bridge.current()
    except Standby:
        return standby_page(request)
    except Unavailable as exc:
        return notice("Not serving", str(exc), 503)
    return shell(request)


async def _exists(request: web.Request, ask: Callable[[Bridge], Awaitable[None]]) -> web.Response:
    try:
        await ask(request.app[api.BRIDGE])
    except Standby:
        return standby_page(request)
    except Unavailable as exc:
        return notice("Not serving", str(exc), 503)
    except NotFound as exc:
        return notice("Not found", str(exc), 404)
    return shell(request)


async def _page_of_one(
    request: web.Request, param: str, what: str, find: Callable[[Bridge, int], Awaitable[bool]]
) -> web.Response:
    """The page of one job or workflow: 400 for a bad id, 404 when ``find`` says there is
    no such ``what``, else the page."""
    try:
        ident = api.whole(request.match_info[param], f"a {what} id")
    except web.HTTPBadRequest as exc:
        return notice("Bad address", (exc.text or "").removeprefix("400: ").strip(), 400)

    async def ask(bridge: Bridge) -> None:
        if not await find(bridge, ident):
            raise NotFound(f"no {what} {ident}")

    return await _exists(request, ask)


async def _job_exists(bridge: Bridge, job_id: int) -> bool:
    reply = await bridge.ask(lambda rid: wire.GetJob(rid, job_id), wire.JobReply)
    return reply.job is not None


async def _workflow_exists(bridge: Bridge, workflow_id: int) -> bool:
    reply = await bridge.ask(lambda rid: wire.GetWorkflow(rid, workflow_id), wire.WorkflowReply)
    return reply.workflow is not None


async def job_page(request: web.Request) -> web.Response:
    return await _page_of_one(request, "job_id", "job", _job_exists)


async def workflow_page(request: web.Request) -> web.Response:
    return await _page_of_one(request, "workflow_id", "workflow", _workflow_exists)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text=f"404: no file {name!r}\n")
    return web.Response(
        body=request.app[STATIC][name],
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": f"max-age={FILE_CACHE_S}"},
    )
