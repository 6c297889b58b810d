"""``rq+redis://`` URLs: the Redis URL beneath and the serializer RQ jobs are read with.

``rq+redis://host:6379/0?serializer=pickle`` opts in to RQ's default pickle serializer; the
default is ``json`` (``rq.serializers.JSONSerializer``). Pickle runs code named by the payload
when it is read, so it is never chosen implicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from services.errors import ConfigError

SERIALIZERS = ("json", "pickle")
"""The serializers the backend reads and writes RQ jobs with, by their ``rq`` alias."""


@dataclass(frozen=True)
class RqTarget:
    """Where the RQ queues are and how their jobs are serialized."""

    redis_url: str
    serializer: str = "json"


def parse_url(url: str) -> RqTarget:
    """``rq+redis://...`` as the Redis URL beneath and the serializer.

    Raises:
        ConfigError: not an ``rq+`` URL, or an unknown serializer.
    """
    parts = urlsplit(url)
    if not parts.scheme.startswith("rq+"):
        raise ConfigError(f"not an RQ URL: {parts.scheme}://")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    chosen = [value for name, value in pairs if name == "serializer"]
    serializer = chosen[-1] if chosen else "json"
    if serializer not in SERIALIZERS:
        raise ConfigError(f"unknown RQ serializer {serializer!r}; use json or pickle")
    rest = urlencode([(name, value) for name, value in pairs if name != "serializer"])
    inner = parts._replace(scheme=parts.scheme.removeprefix("rq+"), query=rest).geturl()
    return RqTarget(redis_url=inner, serializer=serializer)


def with_serializer(url: str, serializer: str) -> str:
    """``url`` with ``?serializer=`` set (the CLI's ``--rq-serializer``)."""
    parts = urlsplit(url)
    pairs = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n != "serializer"]
    return parts._replace(query=urlencode([*pairs, ("serializer", serializer)])).geturl()
