"""The TCP proxy the PostgreSQL tests cut links with (tests/helpers/tcp_proxy.py): closing
it closes every socket it made, whatever state its connections are in. A socket left to the
garbage collector is a ResourceWarning, and that fails whichever test is running when the
collector comes (two CI runs failed so, in unrelated tests)."""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator

from tests.helpers.tcp_proxy import TcpProxy


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A loopback server echoing what each connection sends until it closes; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    served: list[socket.socket] = []

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                served.append(conn)
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for conn in served:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def deaf_server() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connection to it is never completed
    (Linux drops the SYN), as with a server that stopped answering."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # fills the queue of 0 (+1)
            yield port


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"waited 10 s for {what}"
        time.sleep(0.01)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    return sock


def ended(sock: socket.socket) -> bool:
    """Whether the peer closed or reset ``sock`` (reading past what it had sent); a
    TimeoutError after 10 s if it did neither."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@contextlib.contextmanager
def no_socket_left_to_the_collector() -> Iterator[None]:
    """Fails if a socket or a transport is found unclosed when collected in the block (or
    by the ``gc.collect()`` at its end)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def forwarding_held_and_silenced(port: int) -> list[socket.socket]:
    """Three clients of a proxy to ``port``, one in each state, then the proxy closed: the
    clients. The proxy is gone with this frame, so what it left open is garbage now."""
    proxy = TcpProxy("127.0.0.1", port).start()
    forwarded = connect(proxy.port)
    forwarded.sendall(b"ping")
    assert forwarded.recv(4) == b"ping"
    holding = connect(proxy.port)
    until(lambda: proxy.accepted == 2, "both connections")
    proxy.blackhole()
    holding.sendall(b"held")
    holding.shutdown(socket.SHUT_WR)  # its close is held too
    silenced = connect(proxy.port)  # accepted while blackholed: hears nothing
    until(lambda: proxy.accepted == 3 and proxy.held == 4, "the third and the held bytes")
    proxy.close()
    return [forwarded, holding, silenced]


def reaching_a_deaf_target(port: int) -> socket.socket:
    """A client of a proxy to ``port`` that never answers, the proxy closed while it tries
    to reach it: the client."""
    proxy = TcpProxy("127.0.0.1", port).start()
    client = connect(proxy.port)
    until(lambda: proxy.connecting == 1, "the proxy to be reaching the target")
    proxy.close()
    assert proxy.connecting == 0
    return client


def test_closing_the_proxy_closes_its_connections_forwarding_held_and_silenced() -> None:
    with no_socket_left_to_the_collector(), echo_server() as port:
        for client in forwarding_held_and_silenced(port):
            with client:
                assert ended(client)


def test_closing_the_proxy_while_it_still_reaches_the_target_closes_that_connection() -> None:
    with (
        no_socket_left_to_the_collector(),
        deaf_server() as port,
        reaching_a_deaf_target(port) as client,
    ):
        assert ended(client)
