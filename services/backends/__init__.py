"""Backends behind the queue protocol, chosen by URL scheme and imported only when used.

Only this package knows which module serves which scheme; the consumer and producer call
``open_queue`` and see a ``Backend``; the HTTP service calls ``open_async_queue`` and sees an
``AsyncBackend``.
"""

from __future__ import annotations

import importlib
from urllib.parse import quote, urlsplit

from services.errors import ConfigError
from services.protocol import AsyncBackend, Backend
from services.settings import QueueSettings

_MODULES = {
    "memory": "services.backends.memory.backend",
    "redis": "services.backends.redis.queue",
    "rediss": "services.backends.redis.queue",
    "unix": "services.backends.redis.queue",
}
_ASYNC_MODULES = {
    "redis": "services.backends.redis.aio",
    "rediss": "services.backends.redis.aio",
    "unix": "services.backends.redis.aio",
}
"""Backends with an asyncio client (``services.protocol.aio``), for ``conveyor serve``."""


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
    if scheme not in _ASYNC_MODULES:
        raise ConfigError(
            f"the {scheme}:// backend cannot be reached from an asyncio service: it lives "
            "inside one `conveyor run` process tree; use a redis:// URL"
        )
    module = importlib.import_module(_ASYNC_MODULES[scheme])
    queue: AsyncBackend = module.open_async_url(url, settings or QueueSettings())
    return queue


def with_password(url: str, password: str) -> str:
    """``url`` carrying ``password`` (kept out of command lines, where ``ps`` shows it)."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}{port}"
    return parts._replace(netloc=netloc).geturl()


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return parts._replace(netloc=netloc).geturl()
