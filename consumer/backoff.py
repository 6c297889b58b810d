"""Capped exponential backoff with full jitter, for job retries and for reconnecting."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_s(
    attempt: int, *, base_s: float, cap_s: float, rng: Callable[[], float] = random.random
) -> float:
    """Delay before try ``attempt + 1``: uniform in [d/2, d], d = min(cap, base * 2**attempt).

    Half the delay is fixed so a retry never comes back at once; the other half is jitter so a
    burst of failures does not return as a burst.
    """
    ceiling = min(cap_s, base_s * 2 ** min(attempt, 62))
    return float(ceiling / 2 + rng() * ceiling / 2)
