"""Unique jobs: which key a unique job holds, shared by the producer, the HTTP API and the CLI.

A *unique* job (``@registry.job(unique=True)`` or ``unique_for=S``, or any job enqueued with a
caller's ``unique_key``) holds a key on its queue while it is queued, delayed, running or
waiting for a retry: enqueueing again with the same key stores nothing and answers the id of
the job that holds it (``JobPutter.put_unique``). The key is the caller's, else
``<job name>:<digest>``, the digest being 32 hex digits of the SHA-256 of the arguments as
canonical JSON (keys sorted, no spaces), so ``f(1, b=2)`` sent from two hosts names one key
whatever the order of its keyword arguments, while ``f(1)`` and ``f(a=1)`` name two (arguments
are not bound to parameter names: call a unique job the same way every time).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.errors import ConfigError, EncodeError
from services.registry import Registry

MAX_KEY_CHARS = 1024
"""A caller's key is at most this long (backends store a digest of it, not the key)."""

_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False
)


class InvalidUniqueKeyError(ConfigError):
    """A caller's unique key is empty, not a string, or too long."""


@dataclass(frozen=True)
class Uniqueness:
    """What a unique enqueue asks of the backend: the key, and how long it holds (None: as
    long as the job lives)."""

    key: str
    ttl_s: float | None


def check_unique_key(key: object) -> str:
    """``key`` if it is a usable caller's key, else ``InvalidUniqueKeyError``."""
    if not isinstance(key, str):
        raise InvalidUniqueKeyError(f"unique key must be a string, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidUniqueKeyError(f"unique key must be 1 to {MAX_KEY_CHARS} characters")
    return key


def arguments_key(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """``<name>:<32 hex digits>``: the key of a unique job called with these arguments.

    Raises:
        EncodeError: an argument is not JSON (the enqueue would fail the same way).
    """
    try:
        text = _canonical.encode([list(args), dict(kwargs)])
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"arguments of {name!r} are not JSON-serialisable: {exc}") from None
    return f"{name}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def key_digest(key: str) -> str:
    """32 hex digits standing for ``key`` where a backend stores it (a bounded, safe name)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def uniqueness(
    registry: Registry | None,
    name: str,
    call: tuple[Sequence[Any], Mapping[str, Any]],
    unique_key: str | None,
) -> Uniqueness | None:
    """What makes the call ``name(*args, **kwargs)`` unique, or None when nothing does.

    A caller's ``unique_key`` makes any job unique (the registry's ``unique_for`` still sets
    how long it holds); without one, the job's spec decides (no registry: not unique).
    """
    spec = registry.get(name) if registry is not None else None
    ttl_s = spec.unique_for_s if spec is not None else None
    if unique_key is not None:
        return Uniqueness(check_unique_key(unique_key), ttl_s)
    if spec is None or not spec.unique:
        return None
    args, kwargs = call
    return Uniqueness(arguments_key(name, args, kwargs), ttl_s)
