"""How many seats the supervisor keeps, and which seats a resize adds or sends away: pure.

Seats are numbered ``0 .. size-1``, like gunicorn's worker ids: a resize to ``size`` adds the
missing numbers below it and asks every seat numbered ``size`` or more to leave (the highest
numbers go first). A leaving seat keeps its number until its process has ended and its jobs were
reclaimed; only then may a later grow give that number to a new seat. So at most one seat holds
a number at any time, and a worker's name stays unique and stable. ``SIGTTIN`` grows the pool by
one, ``SIGTTOU`` shrinks it by one, never below one process (two signals of a kind sent at
once may merge into one, in the kernel or in Python's handler: send them one at a time).
"""

from __future__ import annotations

import signal
from collections.abc import Collection
from dataclasses import dataclass

RESIZE_SIGNALS = {signal.SIGTTIN: +1, signal.SIGTTOU: -1}
"""The signals that resize a running supervisor, and by how much (gunicorn's TTIN/TTOU)."""


@dataclass(frozen=True)
class SeatChanges:
    """What a resize changes now."""

    add: tuple[int, ...] = ()
    """Numbers of the seats to add (their processes start at the next turn)."""
    leave: tuple[int, ...] = ()
    """Numbers of the seats to send away (drain, then removed once reclaimed)."""


def check_size(size: int) -> int:
    """``size`` if a supervisor can run with it; ValueError otherwise."""
    if size < 1:
        raise ValueError(
            f"cannot resize to {size} worker process(es): a supervisor keeps at least 1 "
            "(stop it instead)"
        )
    return size


def seat_changes(present: Collection[int], leaving: Collection[int], size: int) -> SeatChanges:
    """The changes that bring the seats numbered ``present`` (``leaving``: already sent away)
    to ``size`` seats numbered ``0 .. size-1``."""
    add = tuple(index for index in range(size) if index not in present)
    leave = tuple(index for index in sorted(present) if index >= size and index not in leaving)
    return SeatChanges(add=add, leave=leave)
