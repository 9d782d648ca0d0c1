"""Logging set-up for the long-running commands: plain text lines, or one JSON object per
line (``--log-format json``) for log collectors.

A JSON line has ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and
``message``, plus ``exc_info`` (the formatted traceback) when the record carries one.
Only the standard library: ``json`` is fast enough at the rate a scheduler logs.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str) -> None:
    """Send every log record to stderr at ``level`` ("DEBUG".."ERROR") as ``fmt`` ("text"
    or "json"); replaces handlers set before (a second call wins)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
