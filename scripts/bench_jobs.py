"""Job functions for ``bench_pools.py``; worker processes load ``scripts.bench_jobs:registry``.

They are ``conveyor bench``'s jobs (``consumer.bench_jobs``): ``crunch`` (CPU-bound, a fixed
amount of work, so two threads sharing the GIL each take twice as long), ``nap`` and
``async_nap`` (IO-bound).
"""

from __future__ import annotations

from consumer.bench_jobs import registry

__all__ = ["registry"]
