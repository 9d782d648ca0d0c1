"""Logging flags on every long-running command, and the JSON line format."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from actors.cli.main import build_parser
from actors.logs import JsonFormatter

COMMANDS = {
    "scheduler": ["scheduler"],
    "worker": ["worker", "tasks"],
    "dag-resolver": ["dag-resolver", "--bind", "tcp://127.0.0.1:5556"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_log_flags_are_accepted_before_and_after_the_command(command: str) -> None:
    parser = build_parser()
    words = COMMANDS[command]
    after = parser.parse_args([*words, "--log-level", "info", "--log-format", "json"])
    assert (after.log_level, after.log_format) == ("info", "json")
    before = parser.parse_args(["--log-level", "debug", *words])
    assert (before.log_level, before.log_format) == ("debug", None)
    both = parser.parse_args(["--log-level", "debug", *words, "--log-level", "error"])
    assert both.log_level == "error", "the later flag wins"


def test_a_json_line_has_time_level_logger_message_and_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "corral.store", logging.ERROR, __file__, 1, "commit %s failed\nbadly", (7,), exc_info
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "corral.store"
    assert entry["message"] == "commit 7 failed\nbadly"
    assert entry["time"].endswith("+00:00")
    assert "ValueError: boom" in entry["exc_info"]
    plain = json.loads(JsonFormatter().format(logging.LogRecord("x", 20, "", 1, "hi", (), None)))
    assert "exc_info" not in plain
