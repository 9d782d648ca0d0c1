"""Shared pieces of the ``corral`` command line: exit codes, one-line errors, the event loop.

Light to import, like every module that registers a command's flags: ``corral --help`` and
the parsing of every command line import only these (tests/actors/test_cli_imports.py). A
command's handler imports what it needs (the client, the transport, rich) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn

Handler = Callable[[argparse.Namespace], None]
# How a command is registered: add(name, handler, help) -> its parser, for its flags.
Add = Callable[[str, Handler, str], argparse.ArgumentParser]

EXIT_FAILED = 1  # the command ran and the thing it reports failed (a job failed, an error)
EXIT_USAGE = 2  # the command line itself was wrong


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(message: str) -> NoReturn:
    print(f"corral: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_FAILED)


@dataclass(frozen=True)
class Later:
    """The handler ``name`` of ``module``, imported when its command runs, not when the
    command line is parsed (the scheduler's module imports the brain, inspection the
    client and rich)."""

    module: str
    name: str

    def __call__(self, args: argparse.Namespace) -> None:
        handler: Handler = getattr(importlib.import_module(self.module), self.name)
        handler(args)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (it is a dependency on Linux and macOS)."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - platforms without uvloop
        import asyncio

        return asyncio.run(coro)


def client_of(args: argparse.Namespace) -> Any:
    """An AsyncClient of ``--connect`` with ``--key`` / ``--server-key`` (CURVE)."""
    from actors.client import AsyncClient

    return AsyncClient(args.connect, key=args.key, server_key=args.server_key)


def with_client(args: argparse.Namespace, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        async with client_of(args) as client:
            return await work(client)

    return run_async(go())


def print_json(value: Any) -> None:
    """JSON with user payloads (results) decoded from their msgpack form."""
    import msgspec

    from transport import protocol as wire

    def decode_raw(obj: Any) -> Any:
        return wire.unpack_for_view(obj) if isinstance(obj, msgspec.Raw) else obj

    print(json.dumps(msgspec.to_builtins(value, enc_hook=decode_raw), indent=2, default=str))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# The protocol's bounds (transport.payloads.JobId, MAX_SLOTS): checked where they are
# typed, so a wrong id or slot count is a usage error, not a refused frame or a traceback.
MAX_ID = 2**62
MAX_SLOTS = 10_000
MAX_LISTED = 100_000  # transport.jobs.ListJobs.limit


def id_arg(text: str) -> int:
    """A job or workflow id: a whole number from 1 to 2**62."""
    value = positive_int(text)
    if value > MAX_ID:
        raise argparse.ArgumentTypeError(f"no id is that large (at most {MAX_ID}), got {value}")
    return value


def slot_count(text: str) -> int:
    """A worker's slots: 1 to 10,000."""
    value = positive_int(text)
    if value > MAX_SLOTS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SLOTS}, got {value}")
    return value


def prefetch_count(text: str) -> int:
    """Jobs a worker holds beyond its slots: 0 to 9,999 (with the slots, at most 10,000)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value < MAX_SLOTS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SLOTS - 1}, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def when_arg(text: str) -> float:
    """A time on the command line: ISO 8601, or how long ago ("1h"); its Unix time."""
    import time

    from actors.cli.times import parse_when

    try:
        return parse_when(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def list_limit(text: str) -> int:
    """``--limit`` of a listing: 1 to 100,000 jobs (a reply the protocol carries)."""
    value = positive_int(text)
    if value > MAX_LISTED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LISTED}, got {value}")
    return value
