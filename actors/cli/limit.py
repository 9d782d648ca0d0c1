"""``corral limit set | list | remove``: rate limits per task name or concurrency key.

A bad rate ("100/x", "-5/s") is refused here with one line before anything is sent; an
unknown name on remove is refused by the scheduler with one line. Both exit non-zero and
change nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from actors.cli.common import EXIT_USAGE, positive_int, print_json, with_client


def _period(seconds: float) -> str:
    return {1.0: "s", 60.0: "m", 3600.0: "h"}.get(seconds, f"{seconds:g}s")


def _show(limits: list[Any], as_json: bool) -> None:
    if as_json:
        print_json(limits)
        return
    if not limits:
        print("no rate limits")
        return
    width = max(len(limit.name) for limit in limits)
    for limit in limits:
        rate = f"{limit.count}/{_period(limit.period)}"
        source = "  (declared by the task)" if limit.declared else ""
        print(f"{limit.name:<{width}}  {rate:>10}  burst {limit.burst}{source}")


def cmd_limit(args: argparse.Namespace) -> None:
    from actors.client.limits import set_limit_request
    from actors.errors import RequestRefused

    if args.limit_command == "set":
        try:
            set_limit_request(0, args.name, args.rate, args.burst)
        except RequestRefused as exc:
            print(f"corral: error: {exc.message}", file=sys.stderr)  # nothing was sent
            raise SystemExit(EXIT_USAGE) from None

        async def work(client: Any) -> Any:
            return await client.set_limit(args.name, args.rate, burst=args.burst)

    elif args.limit_command == "remove":

        async def work(client: Any) -> Any:
            return await client.remove_limit(args.name)

    else:

        async def work(client: Any) -> Any:
            return await client.limits()

    _show(with_client(args, work), getattr(args, "json", False))


def add_limit_parser(
    add: Callable[..., argparse.ArgumentParser],
    connect_flag: Callable[[argparse.ArgumentParser], None],
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """The ``limit`` subcommand (called by ``actors.cli.main.build_parser``)."""
    p = add("limit", cmd_limit, "rate limits per task name or concurrency key")
    sub = p.add_subparsers(dest="limit_command", required=True, parser_class=parser_class)
    q = sub.add_parser(
        "set",
        help="create or change a limit (admin with keys)",
        description="At most RATE jobs whose task or concurrency key is NAME start, "
        "across every worker: a token bucket held by the scheduler and kept in its database.",
    )
    # "-5/s" is a (bad) rate, not an option: argparse's own test for a negative number
    # decides what a leading "-" is, so the rate's check can say what is wrong with it.
    q._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?(/\w*)?$")
    q.add_argument("name", metavar="NAME", help="a task name or a concurrency key")
    q.add_argument(
        "rate", metavar="RATE", help="jobs per second, minute or hour: 100/s, 30/m, 1000/h"
    )
    q.add_argument(
        "--burst",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most N start at once (default: one second's worth of RATE, at least 1)",
    )
    connect_flag(q)
    q = sub.add_parser("list", help="every limit")
    q.add_argument("--json", action="store_true", help="machine-readable JSON")
    connect_flag(q)
    q = sub.add_parser(
        "remove", help="remove a limit (admin with keys); its waiting jobs may start"
    )
    q.add_argument("name", metavar="NAME")
    connect_flag(q)
