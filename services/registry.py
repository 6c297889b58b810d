"""The registry of job functions: the only way a job name becomes code to run.

A payload names a registered job, never an import path, so a message cannot make a worker import
or call anything the user did not register::

    registry = Registry()

    @registry.job
    def resize(path: str, width: int) -> str: ...

    @registry.job(name="mail.send", max_retries=5, timeout=30, limit="smtp:5", rate="10/s")
    async def send(to: str) -> None: ...

    @registry.job(unique=True)                  # enqueued once while one is queued or running
    def rebuild(index: str) -> None: ...

    @registry.job(rq_name="myapp.jobs.resize")  # what RQ jobs name it (the rq backend)
    def resize(path: str) -> None: ...

    @registry.periodic("*/5 * * * *")           # fired once per due time across the fleet
    def report() -> None: ...

**RQ names.** On the ``rq+redis://`` backend a job's name is RQ's function path. ``get``
also finds a job by the ``rq_name`` it declares and by its function's own ``module.qualname``
(a function defined at module level): both name only functions registered here, so an RQ job
still cannot make a worker import anything; any other path stays unknown.

Limits (``services.limits``) and uniqueness are enforced by the backend, fleet-wide; periodic
entries (``services.periodic``) are fired by the consumers' schedulers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar, overload

from services import limits as limit_terms
from services.errors import JobArgumentsError, JobDefinitionError, UnknownJobError
from services.job import DEFAULT_QUEUE
from services.limits import Limit
from services.periodic import PeriodicSpec, make_spec
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
    limits: tuple[Limit, ...] = ()
    """Concurrency permits (first) and start rates (last) a run must take; see ``limits``."""
    unique: bool = False
    """Enqueueing it while one with the same arguments is queued, delayed or running returns
    that one instead of storing another."""
    unique_for_s: float | None = None
    """With ``unique``: the uniqueness lapses after this many seconds even if the job lives."""
    rq_name: str | None = None
    """The RQ function path this job answers to on the rq backend (``myapp.jobs.resize``)."""

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
        self._periodics: dict[str, PeriodicSpec] = {}
        self._limits: dict[str, Limit] = {}
        self._aliases: dict[str, str] = {}
        """RQ function paths (``rq_name``, ``module.qualname``) to registered names."""

    @overload
    def job(self, func: F, /) -> F: ...

    @overload
    def job(
        self,
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | None = None,
        concurrency: int | None = None,
        limit: str | None = None,
        rate: str | None = None,
        unique: bool = False,
        unique_for: float | None = None,
        rq_name: str | None = None,
    ) -> Callable[[F], F]: ...

    def job(  # type: ignore[misc]  # mypy cannot match a bare-or-called decorator's overloads
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | None = None,
        concurrency: int | None = None,
        limit: str | None = None,
        rate: str | None = None,
        unique: bool = False,
        unique_for: float | None = None,
        rq_name: str | None = None,
    ) -> F | Callable[[F], F]:
        """Register a sync or ``async def`` function; usable bare or with options.

        Args:
            func: the function, when used as a bare ``@registry.job``.
            name: the name producers enqueue it by; defaults to the function's ``__name__``.
            max_retries: how many times a raising job is retried before it is dead-lettered.
            timeout: seconds after which a running job is stopped; None uses the worker's.
            concurrency: at most this many run at once across the fleet (1: a mutex).
            limit: ``"name:N"``, N permits of a limit shared by every job naming it.
            rate: at most this many starts per period across the fleet: ``"100/m"`` (this
                job's own), ``"name:100/m"`` (shared); jobs over it wait, never fail.
            unique: enqueueing it again while one with the same arguments is queued, delayed or
                running returns the existing job.
            unique_for: seconds after which that uniqueness lapses (implies ``unique``).
            rq_name: the RQ function path (``"myapp.jobs.resize"``) RQ jobs run it by.
        """

        def register(target: F) -> F:
            self.add(
                target,
                name=name,
                max_retries=max_retries,
                timeout=timeout,
                concurrency=concurrency,
                limit=limit,
                rate=rate,
                unique=unique,
                unique_for=unique_for,
                rq_name=rq_name,
            )
            return target

        return register(func) if func is not None else register

    def add(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | None = None,
        concurrency: int | None = None,
        limit: str | None = None,
        rate: str | None = None,
        unique: bool = False,
        unique_for: float | None = None,
        rq_name: str | None = None,
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
        if unique_for is not None and unique_for <= 0:
            raise JobDefinitionError(f"job {job_name!r}: unique_for must be > 0 seconds")
        limits = limit_terms.limits_of(job_name, concurrency=concurrency, limit=limit, rate=rate)
        limit_terms.check_consistent(self._limits, job_name, limits)
        spec = JobSpec(
            name=job_name,
            func=func,
            is_async=inspect.iscoroutinefunction(func),
            max_retries=max_retries,
            timeout_s=timeout,
            limits=limits,
            unique=unique or unique_for is not None,
            unique_for_s=unique_for,
            rq_name=rq_name,
        )
        self._alias(spec, rq_name)
        limit_terms.remember(self._limits, limits)
        self._specs[job_name] = spec
        return spec

    def _alias(self, spec: JobSpec, rq_name: str | None) -> None:
        """Let ``get`` find ``spec`` by its RQ path too (``rq_name``, else ``module.qualname``)."""
        if rq_name is not None:
            if rq_name in self._specs or self._aliases.get(rq_name, spec.name) != spec.name:
                raise JobDefinitionError(f"job {spec.name!r}: rq_name {rq_name!r} is taken")
            self._aliases[rq_name] = spec.name
        path = f"{getattr(spec.func, '__module__', '')}.{getattr(spec.func, '__qualname__', '')}"
        # Only a module-level function has a path RQ could import; a clash keeps the first.
        if "<" not in path and not path.startswith(".") and not path.endswith("."):
            self._aliases.setdefault(path, spec.name)

    def periodic(
        self,
        schedule: str | float | timedelta,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: str = "skip",
        max_catch_up: int = 10,
        **job_options: Any,
    ) -> Callable[[F], F]:
        """Register a function as a job and enqueue it at each due time of ``schedule``.

        Args:
            schedule: a 5-field cron expression (UTC), or an interval in seconds or a timedelta.
            name: the job's (and the periodic entry's) name; defaults to ``__name__``.
            queue: the queue each due time's job is put on.
            args, kwargs: the arguments each run gets.
            missed: after an outage, ``"skip"`` the due times missed or ``"catch_up"``.
            max_catch_up: with ``"catch_up"``, at most this many (the newest) are fired.
            job_options: as for ``job`` (``max_retries``, ``timeout``, limits ...).
        """

        def register(target: F) -> F:
            job_name: str = name or getattr(target, "__name__", None) or ""
            # Checked before the job is added: a bad schedule leaves nothing registered.
            entry = make_spec(
                job_name,
                job_name,
                schedule,
                queue=queue,
                args=args,
                kwargs=kwargs,
                missed=missed,
                max_catch_up=max_catch_up,
            )
            self.add(target, name=name, **job_options)
            self._periodics[job_name] = entry
            return target

        return register

    def periodics(self) -> list[PeriodicSpec]:
        """The periodic entries, by name."""
        return [self._periodics[name] for name in sorted(self._periodics)]

    def get(self, name: str) -> JobSpec:
        """The spec registered as ``name``; raises ``UnknownJobError`` if there is none."""
        try:
            return self._specs[name]
        except KeyError:
            pass
        try:
            return self._specs[self._aliases[name]]
        except KeyError:
            raise UnknownJobError(f"unknown job {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._aliases

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
        capped._periodics = dict(self._periodics)
        capped._limits = dict(self._limits)
        capped._aliases = dict(self._aliases)
        return capped

    def names(self) -> list[str]:
        """The registered job names, sorted."""
        return sorted(self._specs)
