"""``corral backup PATH``: an online copy of the scheduler's SQLite database, taken from
the file while the scheduler runs (``actors.scheduler.store.sqlite_backup`` says why from
the file and how it stays consistent). PostgreSQL has its own tool: pg_dump."""

from __future__ import annotations

import argparse
import os
import sys

from actors.cli.common import EXIT_USAGE, Add
from actors.config import DEFAULT_DB, is_postgres, redact_dsn


def add_backup_parser(add: Add) -> None:
    p = add(
        "backup",
        cmd_backup,
        "copy the SQLite database to a new file while the scheduler runs (online backup)",
    )
    p.add_argument("path", metavar="PATH", help="the new file (an existing one is refused)")
    p.add_argument(
        "--db",
        default=os.environ.get("CORRAL_DB") or DEFAULT_DB,
        metavar="PATH",
        help=f"the scheduler's SQLite file (env CORRAL_DB; default {DEFAULT_DB})",
    )


def cmd_backup(args: argparse.Namespace) -> None:
    from actors.scheduler.store.sqlite_backup import backup

    if is_postgres(args.db):
        print(
            f"corral: error: {redact_dsn(args.db)} is a PostgreSQL database: back it up with "
            "pg_dump (e.g. pg_dump -Fc -f corral.dump DSN)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)
    if os.path.lexists(args.path):
        print(f"corral: error: {args.path} exists already; give a new path", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    size, jobs = backup(args.db, args.path)
    print(f"{os.path.abspath(args.path)}  {size:,} bytes, {jobs:,} jobs (from {args.db})")
