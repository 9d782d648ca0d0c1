"""The dashboard's live updates: ``/api/events``, the event hub's stream as server-sent
events (one ``data:`` line of JSON per Events frame the hub sends).

Each open page holds one subscription of the hub (``actors.scheduler.events``), like
``corral watch``, and is bounded like any subscriber: the hub sends at most its window of
frames unacknowledged, and a frame is acknowledged only once written to the page's
connection; a page that does not read (a slow tab, a laptop asleep) stops acknowledging,
and the hub keeps a bounded buffer for it, dropping the oldest events and saying how many
in the next frame (``dropped``: the page then reads everything again). So a tab open for a
day holds a bounded amount of the scheduler's memory, and never slows it. At most
``MAX_STREAMS`` pages stream at once (503 beyond); a comment line every ``KEEPALIVE_S``
finds connections that went away. A stream ends when the term it follows ends (the
browser reconnects by itself, to the next term or to a standby's refusal).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from actors.http.api import BRIDGE, answers
from transport import protocol as wire

# Pages streaming at once: a few operators with a few tabs each; the hub allows 1,000
# subscriptions in all and the CLI's watchers need their share.
MAX_STREAMS = 32
# A comment line this often: a proxy keeps the connection, a closed one is noticed.
KEEPALIVE_S = 15.0
# What the browser waits before reconnecting a dropped stream (the SSE retry field), ms.
RETRY_MS = 2000

STREAMS = web.AppKey("streams", list)


@answers
async def events(request: web.Request) -> web.StreamResponse:
    streams = request.app[STREAMS]
    if len(streams) >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(
            text=f"503: {MAX_STREAMS} pages stream events already; close one\n"
        )
    frames: asyncio.Queue[wire.Message] = asyncio.Queue()  # at most the hub's window
    subscription = request.app[BRIDGE].subscribe(frames.put_nowait)
    streams.append(subscription)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold the stream
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        while subscription.current:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    frame = await frames.get()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if isinstance(frame, wire.ErrorReply):  # refused or evicted by the hub
                await response.write(f"event: refused\ndata: {frame.message}\n\n".encode())
                break
            if isinstance(frame, wire.Events):
                await response.write(f"data: {as_json(frame)}\n\n".encode())
                subscription.ack()
        return response
    except ConnectionResetError:
        return web.Response(status=204)  # the page went away; nothing to answer
    finally:
        streams.remove(subscription)
        subscription.close()


def as_json(frame: wire.Events) -> str:
    """One Events frame as the page reads it."""
    return json.dumps(
        {
            "dropped": frame.dropped,
            "events": [
                {
                    "kind": e.kind,
                    "job_id": e.job_id,
                    "status": e.status,
                    "queue": e.queue,
                    "worker": e.worker,
                    "fraction": e.fraction,
                    "message": e.message,
                    "at": e.at,
                }
                for e in frame.events
            ],
        },
        separators=(",", ":"),
    )


def add_routes(app: web.Application) -> None:
    app[STREAMS] = []
    app.router.add_get("/api/events", events)
