"""Parsing a ``corral`` command line imports only light modules: every corral process (each
command, each scheduler and worker) parses its command line first, and the test suite
starts hundreds. A command's handler imports the client, the transport, rich or the
brain when it runs (``actors.cli.common.Later``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import strategies
from actors.cli.common import Later
from actors.cli.main import build_parser
from actors.cli.server_flags import STRATEGY_NAMES

ROOT = Path(__file__).resolve().parents[2]

# What a command imports when it runs, never while its command line is parsed.
HEAVY = (
    "zmq", "rich", "aiohttp", "aiosqlite", "asyncpg", "uvloop", "asyncio", "transport",
    "strategies", "actors.client", "actors.scheduler", "actors.worker", "actors.keys",
    "actors.http", "actors.cli.inspection", "actors.cli.servers", "actors.cli.views",
)  # fmt: skip

COMMANDS = {
    "corral --help": ["--help"],
    "corral status --help": ["status", "--help"],
    "corral scheduler --help": ["scheduler", "--help"],
    "corral submit --help": ["submit", "--help"],
    "corral jobs (parsed)": ["jobs", "--state", "failed", "--limit", "5"],
}


@pytest.mark.parametrize("argv", list(COMMANDS.values()), ids=list(COMMANDS))
def test_parsing_a_command_line_imports_none_of_the_heavy_modules(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from actors.cli.main import build_parser\n"
        "try:\n"
        f"    build_parser().parse_args({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = [m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy)]\n"
        "print('HEAVY', sorted(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "HEAVY []"


def test_the_strategy_names_in_the_help_are_the_registered_ones() -> None:
    assert list(STRATEGY_NAMES) == sorted(strategies.STRATEGIES)


def test_every_command_handler_named_for_later_exists() -> None:
    parser = build_parser()
    handlers = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for sub in action.choices.values():
            handlers.append(sub.get_default("fn"))
    assert handlers
    for handler in handlers:
        if isinstance(handler, Later):
            module = __import__(handler.module, fromlist=[handler.name])
            assert callable(getattr(module, handler.name)), handler
        else:
            assert callable(handler), handler
