"""``corral scheduler`` and ``corral dag-resolver``: how they run (their flags, and the
logging flags every long-running command takes, are in ``actors.cli.server_flags``).

Every scheduler flag is read as text and validated with its ``CORRAL_*`` variable in one
place (``SchedulerConfig.from_env``), so a bad flag and a bad variable get the same
one-line message and exit 2. A start-up or storage failure ends the process with one
line and exit 1, after releasing the database and the sockets. On PostgreSQL the process
leads or stands by (``actors.scheduler.node``): a lost term or a failed database makes a
leader stand by again, in-process, not exit. HTTP (``--http-port``, ``actors.http.server``)
is the process's, not a term's: started before anything else is opened, served while
standing by too, stopped last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import msgspec

from actors.cli.common import run_async
from actors.cli.open_files import few_open_files, raise_open_files
from actors.config import SchedulerConfig, is_loopback, is_postgres
from actors.runtime import settle_gc

if TYPE_CHECKING:
    from actors.http.settings import HttpSettings
    from actors.metrics import MetricsBoard
    from actors.scheduler.brain import Brain

log = logging.getLogger("corral.scheduler")


def scheduler_config(args: argparse.Namespace) -> SchedulerConfig:
    """Flags over CORRAL_* variables over defaults, validated (raises ConfigError)."""
    fields = [field.name for field in msgspec.structs.fields(SchedulerConfig)]
    return SchedulerConfig.from_env(**{name: getattr(args, name) for name in fields})


def cmd_scheduler(args: argparse.Namespace) -> None:
    from actors.http.settings import http_settings
    from actors.scheduler.brain import Brain

    config = scheduler_config(args)
    http = http_settings(config)  # ConfigError before anything is opened
    # The process serves HTTP (actors.http.server), across terms; the Brain serves none.
    config = msgspec.structs.replace(config, metrics_port=None)
    if config.insecure and not config.keys and not is_loopback(config.bind):
        print(
            f"corral scheduler: WARNING: serving {config.bind} without keys (--insecure): "
            "anyone who reaches it can act as a worker or a client",
            file=sys.stderr,
            flush=True,
        )
    few = few_open_files(raise_open_files(), "corral scheduler")
    if few:
        print(few, file=sys.stderr, flush=True)
    if is_postgres(config.db):
        run_async(serve_with_standbys(config, http))
        return

    async def serve() -> None:
        import signal

        brain = Brain(config)
        # A signal during start-up (the port may already be bound) stops it once started,
        # cleanly, instead of killing the process with the default action.
        loop = asyncio.get_running_loop()
        early = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, early.set)
        loop.add_signal_handler(signal.SIGHUP, reload_keys)  # not the default: exit
        async with serving_http(http, lambda: brain.system.board, lambda: brain):
            await serve_brain(brain, early)

    run_async(serve())


async def serve_brain(brain: Brain, early: asyncio.Event) -> None:
    """Start ``brain`` (on failure it has released everything it opened), serve until
    stopped (at once if ``early`` is set by then), close it."""
    import signal

    await brain.start()
    try:
        # Everything allocated so far lives as long as the process: move it out of the
        # cyclic GC's way, so full collections scan only what the work allocates.
        settle_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, brain.stop)
        if early.is_set():
            brain.stop()
        print(brain.summary(), flush=True)
        await brain.run()
    finally:
        await brain.close()


async def serve_with_standbys(config: SchedulerConfig, http: HttpSettings | None) -> None:
    """PostgreSQL: lead or stand by, as the election decides (actors.scheduler.node); HTTP
    is served throughout, with the metrics of the term led, none while standing by."""
    import signal

    from actors.scheduler.node import Node

    node = Node(config, lambda line: print(line, flush=True))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop)
    loop.add_signal_handler(signal.SIGHUP, reload_keys)
    async with serving_http(
        http,
        lambda: node.brain.system.board if node.brain else None,
        lambda: node.brain,
        lambda: node.leader(),
    ):
        await node.run()


@contextlib.asynccontextmanager
async def serving_http(
    settings: HttpSettings | None,
    board: Callable[[], MetricsBoard | None],
    brain: Callable[[], Brain | None] | None = None,
    leader: Callable[[], tuple[str, int]] = lambda: ("", 0),
) -> AsyncIterator[None]:
    """The HTTP server (none without a port) for as long as the block runs; started
    first, so a port in use ends the process (ConfigError, exit 2) before the database
    or the scheduler's address is opened. With ``brain`` (the current term's, None while
    standing by) it serves the dashboard too (``actors.http.pages``); ``leader`` is whom
    a standby's dashboard names."""
    if settings is None:
        yield
        return
    from actors.http.server import HttpServer

    server = HttpServer(settings, board)
    if brain is not None:
        from actors.http.pages import install

        install(server, brain, leader)
    await server.start()
    try:
        yield
    finally:
        await server.stop()


def reload_keys() -> None:
    """SIGHUP: read the key folders again now (they are also re-read when they change)."""
    from actors.keys import reload_all

    reload_all()
    log.info("SIGHUP: key folders read again")


def cmd_dag_resolver(args: argparse.Namespace) -> None:
    from actors.scheduler.dag import DagResolver
    from actors.scheduler.remote_host import host_actor

    raise_open_files()

    async def serve() -> None:
        import signal

        task = asyncio.ensure_future(host_actor(DagResolver(), args.bind))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        print(f"corral dag-resolver on {args.bind}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_async(serve())
