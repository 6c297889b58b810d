"""The jobs ``scripts/dashboard_screenshots.py`` runs: image resizes under a concurrency limit,
emails under a rate limit, reports that sometimes fail (dead letters), a periodic clean-up."""

from __future__ import annotations

import time

from services.registry import Registry

registry = Registry()


@registry.job(concurrency=4)
def resize(ms: int) -> int:
    """An image resize: ``ms`` milliseconds of work, at most 4 at once across the fleet."""
    time.sleep(ms / 1000)
    return ms


@registry.job(rate="20/s")
def email(to: str) -> str:
    """An email: at most 20 sent per second across the fleet."""
    time.sleep(0.01)
    return to


@registry.job(max_retries=0)
def report(customer: int) -> int:
    """A report that fails for one customer in seven (a dead letter, with its traceback)."""
    time.sleep(0.05)
    if customer % 7 == 0:
        raise RuntimeError(f"customer {customer}: the warehouse timed out")
    return customer


@registry.periodic("*/5 * * * *", queue="maintenance")
def clean_up() -> None:
    """Every five minutes: the periodic entry on the Periodic page."""
