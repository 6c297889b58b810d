"""The registry of job functions: the only way a job name becomes code to run.

A payload names a registered job, never an import path, so a message cannot make a worker import
or call anything the user did not register::

    registry = Registry()

    @registry.job
    def resize(path: str, width: int) -> str: ...

    @registry.job(name="mail.send", max_retries=5, timeout=30)
    async def send(to: str) -> None: ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar, overload

from services.errors import JobArgumentsError, JobDefinitionError, UnknownJobError
from services.settings import DEFAULT_MAX_RESULT_BYTES

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True)
class JobSpec:
    """A registered job function and how to run it."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout_s: float | None = None
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    """A larger JSON-encoded return value fails the job (the worker's ``--max-result-bytes``)."""

    def check_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Raise ``JobArgumentsError`` unless ``func(*args, **kwargs)`` would bind."""
        signature = _signature(self.func)
        if signature is None:
            return  # some builtins have no signature to check against; the call will tell
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise JobArgumentsError(f"job {self.name!r}: {exc}") from None


@functools.cache
def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    # Cached: inspect.signature costs ~20 us, a seventh of a one-round-trip enqueue.
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


class Registry:
    """Job functions by name. Build one per application and pass it where it is needed."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    @overload
    def job(self, func: F, /) -> F: ...

    @overload
    def job(
        self,
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def job(  # type: ignore[misc]  # mypy cannot match a bare-or-called decorator's overloads
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | None = None,
    ) -> F | Callable[[F], F]:
        """Register a sync or ``async def`` function; usable bare or with options.

        Args:
            func: the function, when used as a bare ``@registry.job``.
            name: the name producers enqueue it by; defaults to the function's ``__name__``.
            max_retries: how many times a raising job is retried before it is dead-lettered.
            timeout: seconds after which a running job is stopped; None uses the worker's.
        """

        def register(target: F) -> F:
            self.add(target, name=name, max_retries=max_retries, timeout=timeout)
            return target

        return register(func) if func is not None else register

    def add(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | None = None,
    ) -> JobSpec:
        """Register ``func`` without the decorator syntax; returns its spec."""
        if not callable(func):
            raise JobDefinitionError(f"{func!r} is not callable")
        job_name = name or getattr(func, "__name__", "")
        if not job_name:
            raise JobDefinitionError(f"{func!r} has no __name__; pass name=")
        if job_name in self._specs:
            raise JobDefinitionError(f"job {job_name!r} is already registered")
        if max_retries < 0:
            raise JobDefinitionError(f"job {job_name!r}: max_retries must be >= 0")
        if timeout is not None and timeout <= 0:
            raise JobDefinitionError(f"job {job_name!r}: timeout must be > 0 seconds")
        spec = JobSpec(
            name=job_name,
            func=func,
            is_async=inspect.iscoroutinefunction(func),
            max_retries=max_retries,
            timeout_s=timeout,
        )
        self._specs[job_name] = spec
        return spec

    def get(self, name: str) -> JobSpec:
        """The spec registered as ``name``; raises ``UnknownJobError`` if there is none."""
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownJobError(f"unknown job {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def with_result_cap(self, max_result_bytes: int) -> Registry:
        """A copy of this registry whose jobs may return at most ``max_result_bytes``."""
        capped = Registry()
        capped._specs = {
            name: replace(spec, max_result_bytes=max_result_bytes)
            for name, spec in self._specs.items()
        }
        return capped

    def names(self) -> list[str]:
        """The registered job names, sorted."""
        return sorted(self._specs)
