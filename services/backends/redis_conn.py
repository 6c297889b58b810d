"""Redis connections with bounded timeouts, and the mapping of redis-py errors to ours.

redis-py retries failed commands by default (with backoff); we turn that off so one call takes
at most its socket timeout, and the caller (the worker loop, the heartbeat) decides about
retrying. Errors leave this module as ``BackendUnavailableError`` (Redis unreachable, loading,
out of memory, read-only) or ``ConfigError`` (wrong password, ACL denies a command).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.errors import BackendUnavailableError, ConfigError

_BUSY_PREFIXES = ("OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY")


def make_client(url: str, *, timeout_s: float) -> redis.Redis:
    """A client whose every call (connect, send, read) gives up after ``timeout_s``."""
    pool = redis.ConnectionPool.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    return redis.Redis(connection_pool=pool)


@contextmanager
def guarded(what: str, where: str) -> Iterator[None]:
    """Run Redis calls for ``what``, translating failures; ``where`` is the redacted URL."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConfigError(f"{what}: Redis at {where} refused the credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BackendUnavailableError(f"{what}: Redis at {where} unavailable: {exc}") from exc
    except redis.ResponseError as exc:
        message = str(exc)
        if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in message:
            raise ConfigError(f"{what}: the ACL user lacks a permission: {message}") from None
        if message.startswith(_BUSY_PREFIXES):
            raise BackendUnavailableError(f"{what}: Redis at {where}: {message}") from exc
        raise


def command(client: redis.Redis, *args: Any) -> Any:
    """Send one raw command: for replies redis-py types too loosely, or float timeouts."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
