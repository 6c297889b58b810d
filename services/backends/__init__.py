"""Backends behind the queue protocol, chosen by URL scheme and imported only when used.

Only this package knows which module serves which scheme; the consumer and producer call
``open_queue`` and see a ``Backend``; the HTTP service calls ``open_async_queue`` and sees an
``AsyncBackend``.
"""

from __future__ import annotations

import importlib
from typing import Protocol
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from services.backends.rq.urls import SERIALIZERS, with_serializer
from services.errors import ConfigError
from services.protocol import AsyncBackend, Backend
from services.settings import QueueSettings

_REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)
"""One server, a Redis Cluster, a Sentinel-watched master (``redis/urls.py`` has the forms)."""
_MODULES = {
    "memory": "services.backends.memory.backend",
    **{scheme: "services.backends.redis.queue" for scheme in _REDIS_SCHEMES},
    "rq+redis": "services.backends.rq.backend",
    "rq+rediss": "services.backends.rq.backend",
}
_ASYNC_MODULES = {scheme: "services.backends.redis.aio" for scheme in _REDIS_SCHEMES}
"""Backends with an asyncio client (``services.protocol.aio``), for ``conveyor serve``."""
_PROBE_MODULES = {"redis": "services.backends.redis.probe", "unix": "services.backends.redis.probe"}
"""Servers ``conveyor bench`` can read figures from (memory, commands) beside the backend."""


def scheme_of(url: str) -> str:
    """The URL's scheme, checked against the backends this build knows."""
    scheme = urlsplit(url).scheme
    if scheme not in _MODULES:
        known = ", ".join(f"{name}://" for name in sorted(_MODULES))
        raise ConfigError(f"unsupported queue URL {redact_url(url)!r}; use one of {known}")
    return scheme


def open_queue(url: str, settings: QueueSettings | None = None) -> Backend:
    """Connect to the backend that ``url`` names.

    Raises:
        ConfigError: the scheme is unknown, or its backend is not available in this build.
    """
    module_name = _MODULES[scheme_of(url)]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        scheme = scheme_of(url)
        raise ConfigError(f"the {scheme}:// backend is not available in this build yet") from None
    queue: Backend = module.open_url(url, settings or QueueSettings())
    return queue


def open_async_queue(url: str, settings: QueueSettings | None = None) -> AsyncBackend:
    """The asyncio roles on the backend that ``url`` names (connects on first use).

    Raises:
        ConfigError: the scheme is unknown, or its backend has no asyncio client: a
            ``memory://`` queue lives inside one process tree, out of any other's reach.
    """
    scheme = scheme_of(url)
    if scheme.startswith("rq+"):
        raise ConfigError(
            f"the {scheme}:// backend has no asyncio client: `conveyor serve` cannot serve RQ's "
            "queues; enqueue with `conveyor enqueue` or Producer on it, or serve a redis:// URL"
        )
    if scheme not in _ASYNC_MODULES:
        raise ConfigError(
            f"the {scheme}:// backend cannot be reached from an asyncio service: it lives "
            "inside one `conveyor run` process tree; use a redis:// URL (or redis+cluster://, "
            "redis+sentinel://)"
        )
    module = importlib.import_module(_ASYNC_MODULES[scheme])
    queue: AsyncBackend = module.open_async_url(url, settings or QueueSettings())
    return queue


_SECRET_QUERY = ("sentinel_password",)
"""Query options that carry a password (``redis+sentinel://``): redacted like the password."""


def _split_netloc(url: str) -> tuple[SplitResult, str, str | None, str]:
    """``url``'s parts, user, password (None if none) and host list (``h:p[,h:p...]``).

    ``urlsplit``'s ``hostname``/``port`` cannot read a cluster's or Sentinel's host list, so
    the netloc is cut by hand: credentials end at the last ``@``.
    """
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if not at:
        return parts, "", None, hosts
    user, colon, password = credentials.partition(":")
    return parts, user, (password if colon else None), hosts


def with_password(url: str, password: str) -> str:
    """``url`` carrying ``password`` (kept out of command lines, where ``ps`` shows it); on a
    Sentinel URL, the data nodes' password (the sentinels' is ``?sentinel_password=``)."""
    parts, user, _, hosts = _split_netloc(url)
    netloc = f"{user}:{quote(password, safe='')}@{hosts}"
    return parts._replace(netloc=netloc).geturl()


def with_rq_serializer(url: str, serializer: str) -> str:
    """``url`` reading and writing RQ jobs with ``serializer`` (the CLI's ``--rq-serializer``).

    Raises:
        ConfigError: ``url`` is not an ``rq+redis://`` URL, or ``serializer`` is unknown.
    """
    scheme = scheme_of(url)
    if not scheme.startswith("rq+"):
        raise ConfigError(
            f"--rq-serializer (CONVEYOR_RQ_SERIALIZER) applies to rq+redis:// URLs only, not "
            f"{scheme}://; drop it, or point --url at RQ's queues (rq+redis://host:port/db)"
        )
    if serializer not in SERIALIZERS:
        raise ConfigError(f"unknown RQ serializer {serializer!r}; use json or pickle")
    return with_serializer(url, serializer)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages."""
    parts, user, password, hosts = _split_netloc(url)
    if password is not None:
        parts = parts._replace(netloc=f"{user}:***@{hosts}")
    if any(name in parts.query for name in _SECRET_QUERY):
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        hidden = [(name, "***" if name in _SECRET_QUERY else value) for name, value in pairs]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return parts.geturl()


class ServerProbe(Protocol):
    """Figures about the server behind a queue, for ``conveyor bench``; not part of a backend."""

    def incr(self, key: str) -> int: ...
    def read_int(self, key: str) -> int: ...
    def used_memory(self) -> int: ...
    def commands_processed(self) -> int: ...
    def delete(self, *names: str) -> None: ...
    def close(self) -> None: ...


def open_probe(url: str) -> ServerProbe | None:
    """A probe on the server ``url`` names; None for a backend without a server (memory://)."""
    module_name = _PROBE_MODULES.get(scheme_of(url))
    if module_name is None:
        return None
    probe: ServerProbe = importlib.import_module(module_name).open_url(url)
    return probe
