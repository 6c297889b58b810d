"""The one place user code runs.

``execute`` and ``execute_async`` call a registered job function and turn whatever happens into
an ``Outcome``: a success with the encoded return value, or a failure with the traceback as text.
A raising job never escapes into the worker. A return value that cannot be encoded, or whose
encoding is larger than the job's ``max_result_bytes`` (``--max-result-bytes``), makes the job
a failure like a raise: it is retried, then dead-lettered, and nothing oversized is stored.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from services.codec import encode_value
from services.errors import EncodeError
from services.job import Job
from services.registry import JobSpec

MAX_TRACEBACK_CHARS = 8192


@dataclass(frozen=True)
class Outcome:
    """How one execution ended."""

    ok: bool
    result: bytes | None = None
    error: str | None = None
    duration_s: float = 0.0


def execute(spec: JobSpec, job: Job) -> Outcome:
    """Run a job in this thread (an ``async def`` job in a fresh event loop)."""
    started = time.perf_counter()
    try:
        value = spec.func(*job.args, **job.kwargs)
        if spec.is_async:
            value = asyncio.run(value)
        return _success(spec, value, time.perf_counter() - started)
    except BaseException:  # a job's SystemExit or KeyboardInterrupt must not stop the worker
        return _failure(time.perf_counter() - started)


async def execute_async(spec: JobSpec, job: Job, loop: asyncio.AbstractEventLoop) -> Outcome:
    """Run a job on ``loop``: natively if ``async def``, else in the loop's thread executor."""
    started = time.perf_counter()
    try:
        if spec.is_async:
            value = await _as_awaitable(spec.func(*job.args, **job.kwargs))
        else:
            value = await loop.run_in_executor(None, lambda: spec.func(*job.args, **job.kwargs))
        return _success(spec, value, time.perf_counter() - started)
    except asyncio.CancelledError:
        raise
    except BaseException:
        return _failure(time.perf_counter() - started)


def _as_awaitable(value: Any) -> Awaitable[Any]:
    return value  # type: ignore[no-any-return]


def _success(spec: JobSpec, value: Any, duration_s: float) -> Outcome:
    try:
        result = encode_value(value, what="the job's return value")
    except EncodeError as exc:
        return Outcome(ok=False, error=f"{exc}", duration_s=duration_s)
    if len(result) > spec.max_result_bytes:
        error = (
            f"ResultTooLargeError: the job's return value is {len(result)} bytes as JSON, over "
            f"the limit of {spec.max_result_bytes} (--max-result-bytes); store large data "
            "elsewhere and return a reference to it"
        )
        return Outcome(ok=False, error=error, duration_s=duration_s)
    return Outcome(ok=True, result=result, duration_s=duration_s)


def _failure(duration_s: float) -> Outcome:
    text = traceback.format_exc()
    if len(text) > MAX_TRACEBACK_CHARS:  # keep the end: it names the error
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return Outcome(ok=False, error=text, duration_s=duration_s)
