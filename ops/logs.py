"""Log set-up: human-readable or JSON lines, with every configured secret redacted."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Sequence
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Last line of defence: no configured secret ever reaches a log line, whatever the caller logged."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
            record.exc_info = None  # formatters would render the raw traceback again from it
        return True

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


def configure_logging(
    level: str, *, secrets: Sequence[str], fmt: Literal["text", "json"] = "text", quiet: bool = False
) -> None:
    """`quiet` keeps the console bridge's terminal clean: warnings and errors only."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level)
    root.setLevel(max(numeric, logging.WARNING) if quiet else numeric)


class _Discard(io.TextIOBase):
    """A text stream that drops everything written to it."""

    def write(self, text: str) -> int:
        return len(text)


def finish_logging() -> None:
    """Silence the log handlers, so whatever is printed next is the last line on stderr, whole.

    Worker threads (aiosqlite's, for one) still log while the process winds down. Swapping the stream
    takes the handler's lock, so a line being written finishes first and every later one is dropped.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(_Discard())
