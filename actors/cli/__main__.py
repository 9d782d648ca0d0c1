"""``python -m actors.cli``: the ``corral`` command."""

from actors.cli.main import main

main()
