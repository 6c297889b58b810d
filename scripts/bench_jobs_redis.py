"""Job functions for ``scripts/bench_worker.py``, loaded by spawned worker processes by path.

They are ``conveyor bench``'s jobs (``consumer.bench_jobs``): ``noop``, ``started`` (returns
when it started) and ``sink`` (takes a payload and drops it).
"""

from __future__ import annotations

from consumer.bench_jobs import registry

__all__ = ["registry"]
