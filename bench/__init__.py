"""The load generator: ``python -m bench --help``."""
