"""What a queue name and a caller-chosen job id may be; checked everywhere one enters.

Names end up in backend keys, log lines, URLs (``/v1/queues/{queue}``) and shell commands, so
they are short, printable and free of separators that would need quoting:

* a **queue name** is 1 to 128 characters from ``A-Z a-z 0-9 . _ -`` and ``:``, starting with
  a letter or digit;
* a **job id** chosen by a caller is 1 to 128 characters from the same set (generated ids are
  32 lowercase hex digits, which always fit);
* a fleet **group name** (``conveyor worker --group``) follows the queue name's rule.
"""

from __future__ import annotations

import re

from services.errors import ConfigError

MAX_NAME_CHARS = 128
_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_RULE = "1 to 128 characters from A-Z a-z 0-9 . _ - :, starting with a letter or digit"
NAME_PATTERN = f"^{_ALLOWED.pattern}$"
"""The rule as an anchored regular expression, for schemas (the HTTP API's OpenAPI document)."""


class InvalidNameError(ConfigError):
    """A queue name or job id breaks the rules in ``services.names``."""


def check_queue_name(name: object) -> str:
    """``name`` if it is a valid queue name, else ``InvalidNameError`` saying why."""
    return _check(name, "queue name")


def check_job_id(job_id: object) -> str:
    """``job_id`` if it is a valid caller-chosen job id, else ``InvalidNameError``."""
    return _check(job_id, "job id")


def check_group_name(name: object) -> str:
    """``name`` if it is a valid fleet group name, else ``InvalidNameError``."""
    return _check(name, "group name")


def _check(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a string, not {type(value).__name__}")
    if _ALLOWED.fullmatch(value):
        return value
    shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
    raise InvalidNameError(f"invalid {what} {shown!r}: use {_RULE}")
