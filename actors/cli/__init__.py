"""The ``corral`` command: its subcommands, their terminal views, and the demo."""
