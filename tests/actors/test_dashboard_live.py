"""A dashboard left open for a day holds its memory (issue 18): the page's event stream
(``actors.http.live``) is one bounded subscription of the event hub. A page that stops
reading (a laptop asleep, a hung tab) while far more events pass than any socket buffer
holds costs the scheduler at most its window of frames and its share of the hub's buffer,
the oldest events dropped and counted; read again, slowly, it is told how many it missed
(``dropped``: the page then reads everything again); closed, its subscription is gone.
A real Brain, a real HTTP server, a raw socket with a small receive buffer as the page."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from actors.http.live import STREAMS
from actors.scheduler.events import BUFFERED_BUDGET, MAX_BUFFERED, MIN_BUFFERED, WINDOW
from actors.scheduler.messages import Publish
from tests.actors import test_dashboard_api
from tests.helpers.waiting import until

serve = test_dashboard_api.serve  # the fixture: a Brain on memory, its dashboard served

# Events that pass while the page does not read: each about 200 bytes of JSON, 20 MB in
# all, some forty times what the kernel and aiohttp buffer between the hub and the page.
EVENTS = 100_000
BATCH = 1_000
TEXT = "progress of a long report, " * 4


async def open_stream(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """GET /api/events on a socket that takes in little (4 KiB) until read."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    while await reader.readline() != b"\r\n":  # headers
        pass
    return reader, writer


async def test_a_page_that_stops_reading_holds_a_bounded_share_and_closing_it_frees_it(
    serve: Any,
) -> None:
    dash = await serve()
    hub = dash.brain.scheduler.events
    reader, writer = await open_stream(dash.url)
    await until(lambda: has(len(hub.subscriptions) == 1))
    [sub] = hub.subscriptions.values()
    room = max(MIN_BUFFERED, min(MAX_BUFFERED, BUFFERED_BUDGET // 1))
    held = 0
    for start in range(0, EVENTS, BATCH):
        events = [("progress", i, "", "", "w1", 1, 0.5, TEXT) for i in range(start, start + BATCH)]
        hub.tell(Publish(events))
        await handled(hub)
        held = max(held, len(sub.buffer))
        assert len(sub.buffer) <= room, "never more than its share of the hub's buffer"
        assert 0 <= sub.credit <= WINDOW, "never more than its window in flight"
    await handled(hub)
    assert sub.credit == 0, "the page stopped acknowledging: its window is all in flight"
    assert hub.dropped > 0, "the oldest were dropped, not kept"
    assert held == room, "and what was kept stayed at the bound"
    assert len(dash.server.app[STREAMS]) == 1

    # Read again, slowly: it is told how many it missed before the events after them.
    dropped, pending = 0, b""
    while not dropped:
        pending += await asyncio.wait_for(reader.read(4096), 20)
        *lines, pending = pending.split(b"\n")
        for line in lines:  # the chunked encoding's size lines are no data lines
            if line.startswith(b"data: ") and not dropped:
                dropped = json.loads(line[6:])["dropped"]
    assert dropped == hub.dropped, "every event dropped is counted to the page"

    writer.close()  # the tab closes
    await writer.wait_closed()
    await until(lambda: has(not hub.subscriptions))
    await until(lambda: has(not dash.server.app[STREAMS]))


async def has(value: bool) -> bool:
    return value


async def handled(hub: Any) -> None:
    """Until the hub has handled everything told so far (its handlers do not yield, so
    an empty mailbox means the last one ran)."""
    for _ in range(20_000):
        if hub.mailbox.empty():
            return
        await asyncio.sleep(0.001)
    raise TimeoutError("the hub did not take its mail")
