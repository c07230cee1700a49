"""Logging pieces that the settings' LOGGING names (importable before Django's apps are loaded): a plain format
that one request cannot split into several lines, and a bad Host header as one warning line."""

from __future__ import annotations

import logging

# C0 controls, DEL and the C1/Unicode line breaks some viewers honour, as visible escapes.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, 0x85]} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape_controls(text: str) -> str:
    """The text with every control character and line break written as its escape (`\\n`, `\\x1b`)."""
    return text.translate(_ESCAPES)


class PlainFormatter(logging.Formatter):
    """The plain (one line per record) format, with control characters in the record escaped.

    A request path is logged as Django decodes it, so `GET /x%0a2026-01-01 ... CRITICAL ...` wrote a second,
    forged line. The record's own line is escaped; a traceback, which follows it on lines of its own, is not.
    (The JSON format needs none of this: JSON strings escape control characters.)
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging.Formatter's hook)
        """The record's line, its control characters escaped."""
        return escape_controls(super().formatMessage(record))


class OneLineWarning(logging.Filter):
    """Log a record as a WARNING without its traceback (for `django.security.DisallowedHost`).

    Django logs every request with a Host outside ALLOWED_HOSTS as an ERROR with the full traceback of
    `request.get_host()`: a scanner sending bad Hosts filled the log with tracebacks of nothing wrong here. The
    message names the Host (quoted by Django, so it cannot break the line); the 400 answers the client.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade to WARNING and drop the traceback; never drops the record."""
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info = record.exc_text = None
        return True
