"""A TCP proxy on loopback that a test can cut a process off with: put it between a
scheduler and the PostgreSQL server (``proxy.dsn(dsn)`` is the DSN through it) and

- ``blackhole()``: stop forwarding in both directions but keep every connection open,
  reading what either side sends and holding it (or, ``keep=False``, dropping it). The
  scheduler sees no error, no reset, no close: only silence, as when a link or a switch
  between it and the database dies. New connections are accepted and then hear nothing.
  PostgreSQL's side stays a live session too (its writes never block: the proxy reads).
- ``resume()``: forward again, first delivering what was held, in order (a partition that
  heals: TCP would have retransmitted it), then any close that was held.
- ``cut()``: reset every connection, on both sides (RST: SO_LINGER 0), as when a firewall
  or the peer's kernel rejects the flow; new connections are forwarded as usual, or with
  ``refuse=True`` reset as soon as they are accepted, until ``resume()``.

The proxy runs its own event loop in a thread of its own, so a test whose loop blocks
(a ``subprocess.run``, a port wait) does not stall the scheduler's database link. Every
method is called from the test's thread and returns once the proxy has done it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

CHUNK = 65536


class _Direction:
    """One direction of one proxied connection: reads ``source`` always, writes to
    ``sink`` while the proxy forwards, holds (or drops) while it is blackholed."""

    def __init__(
        self, proxy: TcpProxy, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.source = source
        self.sink = sink
        self.held: list[bytes] = []
        self.eof_held = False
        self.wake = asyncio.Event()  # set by resume(): flush what is held

    async def pump(self) -> None:
        try:
            while True:
                data = await self.source.read(CHUNK)
                if self.proxy.forwarding and not self.held:
                    if not data:
                        break
                    self.sink.write(data)
                    await self.sink.drain()
                    self.proxy.forwarded += len(data)
                    continue
                if data and self.proxy.keep:
                    self.held.append(data)
                    self.proxy.held += len(data)
                elif data:
                    self.proxy.dropped += len(data)
                if not data:
                    self.eof_held = True
                    await self.wake.wait()  # until resume() flushes it all
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.eof_held or self.proxy.forwarding:
                await self._finish()

    async def flush(self) -> None:
        """Deliver what was held (resume), then the held close if any."""
        held, self.held = self.held, []
        try:
            for data in held:
                self.sink.write(data)
            await self.sink.drain()
            self.proxy.forwarded += sum(map(len, held))
        except (ConnectionError, OSError):
            pass
        self.wake.set()

    async def _finish(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if self.sink.can_write_eof():
                self.sink.write_eof()


class TcpProxy:
    """Forwards connections to 127.0.0.1:``port`` from ``self.port`` (both on loopback).
    Use as a context manager, or ``start()`` and ``close()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.forwarding = True
        self.keep = True  # while blackholed: hold the bytes (True) or drop them
        self.refusing = False  # reset new connections at once (cut(refuse=True))
        self.forwarded = self.held = self.dropped = 0  # bytes, both directions
        self.accepted = 0  # connections
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._listener: socket.socket | None = None
        self._bare: set[socket.socket] = set()  # accepted, no transport made for it yet
        self._connecting: set[asyncio.Task[None]] = set()  # reaching the target
        self._writers: set[asyncio.StreamWriter] = set()
        self._directions: set[_Direction] = set()
        self._every_writer: list[asyncio.StreamWriter] = []  # each closed before the loop stops
        self.closing = False

    @classmethod
    def to_dsn(cls, dsn: str) -> TcpProxy:
        """A proxy to the server a postgresql:// DSN names (host and port in it)."""
        parts = urlsplit(dsn)
        assert parts.hostname, f"{dsn} names no host"
        assert parts.port, f"{dsn} names no port"
        return cls(parts.hostname, parts.port)

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the proxy's."""
        parts = urlsplit(dsn)
        userinfo, _, _ = parts.netloc.rpartition("@")
        at = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{at}127.0.0.1:{self.port}"))

    @property
    def connecting(self) -> int:
        """Connections accepted whose own connection to the target is not made yet."""
        return len(self._connecting)

    # ------------------------------------------------------------------ control

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    def blackhole(self, keep: bool = True) -> None:
        """Stop forwarding (see the module docstring); ``keep``: hold the bytes for
        ``resume`` (True) or drop them."""

        async def stop() -> None:
            self.keep = keep
            self.forwarding = False
            for direction in self._directions:
                direction.wake.clear()

        self._call(stop)

    def resume(self) -> None:
        """Forward again, delivering what was held first."""

        async def go() -> None:
            self.forwarding = True
            self.refusing = False
            await asyncio.gather(*(d.flush() for d in list(self._directions)))

        self._call(go)

    def cut(self, refuse: bool = False) -> int:
        """Reset every open connection on both sides (and, ``refuse``, every new one until
        ``resume``); how many proxied connections were reset."""

        async def reset() -> int:
            self.refusing = refuse
            writers = list(self._writers)
            for writer in writers:
                _reset(writer)
            for direction in list(self._directions):
                direction.wake.set()
            return len(writers) // 2

        result: int = self._call(reset)
        return result

    def close(self) -> None:
        """Stop listening, abort every connection, stop the thread."""
        if not self._thread.is_alive():
            return

        async def shut() -> None:
            # No connection outlives the proxy, not even one accepted as it closes. Each
            # socket is closed before the loop stops: an aborted transport closes its
            # socket in a callback of a later turn, and one left to the garbage collector
            # is a ResourceWarning that fails whichever test is running then.
            self.closing = True
            self._stop_listening()
            me = asyncio.current_task()
            while others := [t for t in asyncio.all_tasks() if t is not me]:
                for writer in list(self._writers):
                    writer.transport.abort()
                for direction in list(self._directions):
                    direction.wake.set()
                for task in self._connecting:  # a target that does not answer: no waiting
                    task.cancel()
                _, pending = await asyncio.wait(others, timeout=5)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            for writer in self._every_writer:
                if not writer.transport.is_closing():
                    writer.transport.abort()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            await asyncio.sleep(0)  # transports closed by a cancelled open_connection
            # A connection whose task was cancelled before it first ran has no transport:
            # its socket is closed here, as accept() gave it.
            for sock in self._bare:
                sock.close()
            self._bare.clear()

        self._call(shut)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ inside the loop

    def _call(self, make: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout=10)

    async def _listen(self) -> None:
        # Accepted by hand (not asyncio.start_server), so that each socket is the proxy's
        # from accept() on: start_server makes the transport in a task and the handler in
        # a callback after it, and one connection (asyncpg's cancel of a timed-out query,
        # around the close) was left with an open transport no handler ever saw: the
        # ResourceWarning that failed a CI run, and 3 loaded runs in 6 of the tests.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_waiting)

    def _accept_waiting(self) -> None:
        """Accept every connection waiting (a reader callback: nothing runs in between)."""
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # a connection reset before it was accepted
            sock.setblocking(False)
            self._bare.add(sock)
            asyncio.get_running_loop().create_task(self._serve(sock))

    def _stop_listening(self) -> None:
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None

    async def _serve(self, sock: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except (asyncio.CancelledError, OSError):
            return  # open_connection closed the transport it made, if it made one
        finally:
            self._bare.discard(sock)
        with contextlib.suppress(asyncio.CancelledError):  # close(): nobody else waits
            await self._accepted(reader, writer)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._every_writer.append(writer)
        if self.refusing or self.closing:
            _reset(writer)
            return
        self._writers.add(writer)
        try:
            task = asyncio.current_task()
            assert task is not None
            self._connecting.add(task)
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            finally:
                self._connecting.discard(task)
            self._every_writer.append(up_writer)
            if self.closing:  # close() began while this connection was being made
                for w in (writer, up_writer):
                    w.transport.abort()
                return
            self._writers.add(up_writer)
            ways = (_Direction(self, reader, up_writer), _Direction(self, up_reader, writer))
            self._directions.update(ways)
            try:
                await asyncio.gather(*(way.pump() for way in ways))
            finally:
                self._directions.difference_update(ways)
                for w in (writer, up_writer):
                    w.close()
                    self._writers.discard(w)
        finally:
            self._writers.discard(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), not a FIN: SO_LINGER on, with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def proxy_to(dsn: str) -> Iterator[TcpProxy]:
    """A running proxy to the PostgreSQL server of ``dsn``; closed on exit."""
    with TcpProxy.to_dsn(dsn) as proxy:
        yield proxy
