"""How every Conveyor process logs: human-readable text (the default) or JSON lines.

``setup_logging`` is called once per process: by the ``conveyor`` command line, and by every
worker or producer process it starts (their spec carries the ``LogSettings``, so a child logs
in its parent's format). Both formats go to stderr:

* **text**: ``2024-05-01 12:00:00,123 conveyor.supervisor INFO message`` (a child shows its
  process name, ``worker-0``, where the logger name would be);
* **json**: one object per line with stable keys: ``ts`` (UTC, ISO 8601), ``level``,
  ``logger``, ``msg``, ``pid``, ``process`` (``main``, ``worker-0``, ``producer-1``), then
  where known ``consumer`` (a worker process's consumer id), ``job`` (a job id, given with
  ``extra={"job": ...}``) and ``exc`` (a traceback).

``LogLines`` turns text written for a terminal into log records.

Passwords and tokens never reach a log line: URLs are redacted where they are logged
(``services.backends.redact_url``), and as a second line of defence each formatter scrubs
``scheme://user:secret@``, ``Bearer <token>`` and ``?token=...`` (``password``, ``secret``,
``api_key``, ...) from the whole line, tracebacks included.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@\s]*@")
_BEARER = re.compile(r"(?i)\b(?P<word>bearer)\s+[A-Za-z0-9._~+/=-]+")
_QUERY = re.compile(
    r"(?i)(?P<name>[?&](?:access_token|token|password|passwd|secret|api_key|apikey))=[^&#\s\"']*"
)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True)
class LogSettings:
    """How a process logs; plain data, so a child gets its parent's."""

    level: int = logging.INFO
    format: LogFormat = LogFormat.TEXT


def redact(text: str) -> str:
    """``text`` with URL passwords, bearer tokens and secret-looking query parameters (a token
    a client put in the URL, shown by an access log) replaced by ``***``."""
    text = _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)
    text = _QUERY.sub(r"\g<name>=***", text)
    return _BEARER.sub(r"\g<word> ***", text)


def setup_logging(
    settings: LogSettings,
    *,
    process: str = "main",
    consumer: str | None = None,
    text_format: str | None = None,
) -> None:
    """Send this process's logs to stderr in ``settings.format``.

    Replaces a handler an earlier call (or a forked parent) installed; like
    ``logging.basicConfig``, leaves the logging of a host that configured its own handlers
    (a test runner) alone. ``text_format``: a ``logging`` format string for text, instead of
    the standard one.
    """
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, _StderrHandler)]
    if len(ours) < len(root.handlers):
        return
    for handler in ours:
        root.removeHandler(handler)
    handler = _StderrHandler()
    if settings.format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter(process=process, consumer=consumer))
    else:
        fmt = text_format or f"%(asctime)s {_name_field(process)} %(levelname)s %(message)s"
        handler.setFormatter(TextFormatter(fmt))
    root.addHandler(handler)
    root.setLevel(settings.level)


def _name_field(process: str) -> str:
    """The main process shows the logger's name; a child its own name (``worker-0``)."""
    return "%(name)s" if process == "main" else process.replace("%", "%%")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after setup)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


class TextFormatter(logging.Formatter):
    """The human-readable line, scrubbed of credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, scrubbed of credentials."""

    def __init__(self, *, process: str, consumer: str | None = None) -> None:
        super().__init__()
        self._process = process
        self._consumer = consumer

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "pid": record.process,
            "process": self._process,
        }
        if self._consumer:
            line["consumer"] = self._consumer
        job = getattr(record, "job", None)
        if job is not None:
            line["job"] = str(job)
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False)


class LogLines(io.TextIOBase):
    """A text stream whose lines become log records of ``logger`` at INFO: for output meant
    for a terminal (a progress line) when the logs are JSON and stderr must hold JSON only."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self._logger.info("%s", line)
        return len(text)
