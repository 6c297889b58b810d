"""Redis connections with bounded timeouts, and the mapping of redis-py errors to ours.

redis-py retries failed commands by default (with backoff); we turn that off so one call takes
at most its socket timeout, and the caller (the worker loop, the heartbeat) decides about
retrying. Errors leave this module as ``BackendUnavailableError`` (Redis unreachable, loading,
out of memory, read-only) or ``ConfigError`` (wrong password, ACL denies a command), worded for
the person reading them ("cannot enqueue: ...", not the method that failed).

URL query options are checked before redis-py sees them: ``from_url`` lets them override the
keyword arguments we pass, so ``?ssl_cert_reqs=none`` would silently turn off TLS verification
and ``?socket_timeout=...`` would undo the bounded calls. Only options that cannot weaken our
settings are accepted (``ALLOWED_QUERY``); any other is a ``ConfigError`` naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.errors import BackendUnavailableError, ConfigError

_BUSY_PREFIXES = ("OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY")

ALLOWED_QUERY = frozenset(
    {"db", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "client_name"}
)
"""URL query options that choose a database, name certificates or label the connection."""

_PHRASES = {
    "check_server": "cannot check the Redis server",
    "put": "cannot enqueue",
    "get": "cannot fetch jobs",
    "ack": "cannot acknowledge finished jobs",
    "hand_back": "cannot hand jobs back",
    "retry": "cannot schedule a retry",
    "dead_letter": "cannot dead-letter a job",
    "reclaim": "cannot hand back a stopped worker's jobs",
    "heartbeat": "cannot renew the worker's lease",
    "recover": "cannot recover expired leases",
    "depth": "cannot read the queue depth",
    "counts": "cannot count the queue's jobs",
    "stats": "cannot read the queue statistics",
    "status": "cannot read the job's status",
    "wait_finished": "cannot wait for the job",
    "dead_letters": "cannot list the dead letters",
    "revive": "cannot requeue dead letters",
    "delete_dead": "cannot delete dead letters",
    "queues": "cannot list the queues",
    "cancel": "cannot cancel the job",
}


def check_query(url: str) -> None:
    """Raise ``ConfigError`` for a URL query option outside ``ALLOWED_QUERY``."""
    for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in ALLOWED_QUERY:
            allowed = ", ".join(sorted(ALLOWED_QUERY))
            raise ConfigError(
                f"the queue URL option {name!r} is not accepted: it would override Conveyor's "
                f"own connection settings (TLS verification, timeouts, retries); allowed "
                f"options: {allowed}"
            )


def phrase(what: str) -> str:
    """``what`` (an operation's short name) as the start of a sentence for people."""
    return _PHRASES.get(what) or f"cannot {what.replace('_', ' ')}"


def make_client(url: str, *, timeout_s: float) -> redis.Redis:
    """A client whose every call (connect, send, read) gives up after ``timeout_s``.

    Raises:
        ConfigError: the URL carries a query option outside ``ALLOWED_QUERY``.
    """
    check_query(url)
    pool = redis.ConnectionPool.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    return redis.Redis(connection_pool=pool)


def make_async_client(
    url: str, *, timeout_s: float, max_connections: int = 64
) -> redis.asyncio.Redis:
    """``make_client`` for an event loop: bounded calls, no retries, and at most
    ``max_connections`` connections (a caller beyond waits up to ``timeout_s`` for one).

    Raises:
        ConfigError: the URL carries a query option outside ``ALLOWED_QUERY``.
    """
    check_query(url)
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=AsyncRetry(NoBackoff(), 0),
        protocol=2,
    )
    return redis.asyncio.Redis(connection_pool=pool)


@contextmanager
def guarded(what: str, where: str) -> Iterator[None]:
    """Run Redis calls for ``what``, translating failures; ``where`` is the redacted URL.

    ``what`` is the operation's short name (``"put"``); messages use ``phrase(what)``.

    Errors of the asyncio client are the same classes; an ``await`` inside the block is
    guarded like a blocking call.
    """
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConfigError(
            f"{phrase(what)}: Redis at {where} refused the credentials: {exc}"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BackendUnavailableError(
            f"{phrase(what)}: Redis at {where} is unreachable: {exc}"
        ) from exc
    except redis.ResponseError as exc:
        message = str(exc)
        if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in message:
            raise ConfigError(
                f"{phrase(what)}: the Redis ACL user lacks a permission: {message}"
            ) from None
        if message.startswith(_BUSY_PREFIXES):
            raise BackendUnavailableError(f"{phrase(what)}: Redis at {where}: {message}") from exc
        raise


def command(client: redis.Redis, *args: Any) -> Any:
    """Send one raw command: for replies redis-py types too loosely, or float timeouts."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
