"""The scheduler process's HTTP server: ``/metrics`` and the dashboard (``actors.http.pages``),
served by aiohttp from the scheduler's own event loop (no thread, no second process).

It owns the bearer-token check every request passes and the server's start and stop; the
HTTP settings it serves by (``--http-port``, ``--http-bind``, ``--http-token-file`` and
their older names) are read in ``actors.http.settings``. What it promises:

- Loopback (127.0.0.1) by default. Any other address refuses to start without
  ``--http-token-file`` (ConfigError: one line, exit 2), as ``--bind`` does without
  ``--keys``; the same loopback test decides (``actors.config.is_loopback``).
- With a token file, every request, on loopback too, must carry ``Authorization: Bearer
  TOKEN`` (compared in constant time). Anything else gets 401 with ``WWW-Authenticate:
  Bearer``, whatever the path (a 404 would tell a stranger which pages exist), counted
  in ``corral_http_refused_total`` and logged at most once a second. A browser cannot add
  that header to a page it opens, so the token is also taken as the password of HTTP
  Basic credentials (any user name), and a request that accepts HTML is also challenged
  ``Basic``: the browser asks for it once and sends it with every request after.
- ``start`` serves or raises ConfigError naming the setting and the cause (the port in
  use, an address not on this host), leaving nothing open; ``stop`` closes it all.
- A scrape reads the snapshots the actors publish (``actors.metrics``), never the
  store. The board is the current term's: a standby (PostgreSQL) has none, and serves
  ``corral_leader 0`` alone.

Pages are routes added to ``HttpServer.app`` before ``start``; they pass the same check.
"""

from __future__ import annotations

import base64
import errno
import hmac
import logging
import os
from collections.abc import Callable, Iterator

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from actors.config import setting_name
from actors.errors import ConfigError
from actors.http.settings import HttpSettings
from actors.metrics import MetricsBoard
from actors.scheduler.ratelog import RateLimitedLog

log = logging.getLogger("corral.http")

# A scrape answers in milliseconds; on stop, a request still running after this long
# (a dashboard's event stream, later) is cut rather than holding the process.
SHUTDOWN_S = 1.0
# What a 401 says: the scheme (RFC 6750), and the realm naming what asks.
CHALLENGE = 'Bearer realm="corral"'
# What a browser is also told (RFC 7617): it asks its user, and sends the answer itself.
BROWSER_CHALLENGE = 'Basic realm="corral", charset="UTF-8"'


def bearer_auth(token: bytes, refused: Callable[[web.Request, str], None]) -> Middleware:
    """A middleware letting through only requests with ``Authorization: Bearer TOKEN``;
    the others get 401, after ``refused(request, why)``."""

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() == "basic":
            given = _basic_password(given)
        if scheme.lower() in ("bearer", "basic") and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), token
        ):
            return await handler(request)
        refused(request, "a wrong token" if scheme else "no token")
        challenges = CIMultiDict([(hdrs.WWW_AUTHENTICATE, CHALLENGE)])
        if "text/html" in request.headers.get(hdrs.ACCEPT, ""):
            challenges.add(hdrs.WWW_AUTHENTICATE, BROWSER_CHALLENGE)
        raise web.HTTPUnauthorized(
            headers=challenges,
            text="401: this needs Authorization: Bearer TOKEN (--http-token-file); in a "
            "browser, give the token as the password\n",
        )

    return authorize


class HttpServer(Collector):
    """The process's HTTP server; ``board()`` is the current term's metrics board, None
    while standing by. Also the collector of its own figures (refused requests, role)."""

    def __init__(self, settings: HttpSettings, board: Callable[[], MetricsBoard | None]) -> None:
        self.settings = settings
        self.board = board
        self.refused = 0
        self._refused_log = RateLimitedLog(log)
        middlewares = [bearer_auth(settings.token, self._refuse)] if settings.token else []
        self.app = web.Application(middlewares=middlewares)
        self.app.router.add_get("/metrics", self._metrics)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; raises ConfigError (nothing left open) if the address cannot be bound."""
        settings = self.settings
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{settings.host}:{settings.port}"
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "already in use" if exc.errno == errno.EADDRINUSE else "not allowed"
                allowed = f"a port free to listen on ({where} is {why})"
                raise ConfigError(
                    setting_name(settings.port_setting), settings.port, allowed
                ) from None
            raise ConfigError(
                setting_name(settings.bind_setting),
                settings.host,
                f"an address of this host to listen on ({where}: {_reason(exc)})",
            ) from None
        self._runner = runner
        log.info(
            "serving HTTP on %s (/metrics)%s",
            settings.url,
            "; a bearer token is required" if settings.token else "",
        )

    async def stop(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        # OpenMetrics when the scraper asks for it, gzip when it accepts it: as
        # prometheus-client's own server answers.
        encoder, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
        response = web.Response(
            body=encoder(self.registry), headers={hdrs.CONTENT_TYPE: content_type}
        )
        response.enable_compression()
        return response

    def _refuse(self, request: web.Request, why: str) -> None:
        self.refused += 1
        self._refused_log(
            "HTTP request refused (%s; 401): %s %s from %s",
            why,
            request.method,
            request.path,
            request.remote,
        )

    def collect(self) -> Iterator[Metric]:
        board = self.board()
        if board is not None:
            yield from board.collect()
        yield GaugeMetricFamily(
            "corral_leader",
            "1 while this scheduler serves (always on SQLite), 0 while it stands by.",
            value=0 if board is None else 1,
        )
        yield CounterMetricFamily(
            "corral_http_refused",
            "HTTP requests refused for a missing or wrong bearer token.",
            value=self.refused,
        )


def _basic_password(credentials: str) -> str:
    """The password of HTTP Basic ``credentials`` (base64 of user:password), "" if they
    are malformed."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def _reason(exc: OSError) -> str:
    """The system's words for ``exc`` (asyncio wraps them in a sentence of its own)."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
