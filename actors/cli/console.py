"""The rich Console the ``corral`` commands print tables with: tables printed to a pipe or a
file keep every cell whole, and a closed stdout ends the command quietly (``output``)."""

from __future__ import annotations

from rich.console import Console

from actors.cli.output import closed_stdout

# Width for output that is not a terminal: nothing is wrapped or cut at 80 columns, and
# rich does not pad tables (they are as wide as their content).
PIPE_WIDTH = 10_000


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's own handling exits 1, which a script cannot tell from a failure.
        self.quiet = True
        closed_stdout()


def make_console() -> Console:
    """A rich Console: the terminal's width on a terminal, else wide enough for any row."""
    plain = _Console()
    if plain.is_terminal:
        return plain
    return _Console(width=PIPE_WIDTH)
