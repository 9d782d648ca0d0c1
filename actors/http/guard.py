"""What keeps other web sites out of the dashboard: one middleware, on every route.

A browser visiting some other site can be made to send requests to the dashboard (it
runs on the operator's own machine or network). Two checks refuse them:

- A POST (every action: cancel, re-queue, pause) must carry the ``X-Corral-Action``
  header, and an ``Origin``, when the browser sends one, naming this very host. A page
  elsewhere cannot add that header without the browser first asking (CORS preflight),
  which the dashboard never grants; a plain HTML form cannot add it at all. So a
  cross-site form or image cannot act, token or no token (a browser may hold the token
  as Basic credentials and send it on its own: see ``actors.http.server``).
- Without a token the server listens on loopback only, and answers only requests whose
  ``Host`` is a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``): a site that
  points its own DNS name at 127.0.0.1 (DNS rebinding) gets 421, not the jobs.

Refusals are 403 or 421 with one line of text.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

ACTION_HEADER = "X-Corral-Action"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host: str) -> str:
    """``host`` of a Host header (or an Origin's netloc) without its port or brackets."""
    parts = urlsplit(f"//{host}")
    return (parts.hostname or "").lower()


def guard(token_required: bool) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token_required and host_name(request.host) not in LOOPBACK_HOSTS:
            raise web.HTTPMisdirectedRequest(
                text="421: without --http-token-file the dashboard answers only to "
                "localhost, 127.0.0.1 or [::1]\n"
            )
        if request.method == hdrs.METH_POST:
            origin = request.headers.get(hdrs.ORIGIN)
            if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
                raise web.HTTPForbidden(text="403: a request from another site; refused\n")
            if ACTION_HEADER not in request.headers:
                raise web.HTTPForbidden(
                    text=f"403: an action needs the {ACTION_HEADER} header (the dashboard's "
                    "pages send it; other sites cannot)\n"
                )
        return await handler(request)

    return check
