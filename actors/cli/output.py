"""Output of the ``corral`` commands: a closed stdout (``corral jobs | head``) ends a command
quietly. Tables (rich, ``actors.cli.console``) are imported by the commands that print them.

The closed-pipe handling is the one the Python documentation gives (library/signal.html,
"Note on SIGPIPE"): point stdout at /dev/null so the interpreter's final flush cannot fail
again, and exit with 141 (128 + SIGPIPE), what a shell reports for a command that a closed
pipe stopped.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CLOSED_PIPE = 141


def closed_stdout() -> None:
    """Stdout's reader went away: silence stdout for good and exit as a shell expects."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (captured): nothing to do
        pass
    raise SystemExit(EXIT_CLOSED_PIPE)


def quiet_on_closed_stdout(command: F) -> F:
    """Run a command so that a closed stdout ends it quietly (no BrokenPipeError
    traceback), including the last flush of what it printed."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            closed_stdout()
        except SystemExit:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                closed_stdout()
            raise

    return run  # type: ignore[return-value]
