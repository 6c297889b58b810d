"""How many seats the supervisor keeps, and which seats a resize adds or sends away: pure.

Seats are numbered like gunicorn's worker ids. A resize to ``size`` sends the excess away when
more than ``size`` seats stay, *idle ones first* (a seat whose process runs no job; among equals
the highest number), so a shrink rarely has to wait for a job: a busy seat sent away finishes
its job (or hands it back at the shutdown deadline). A leaving seat keeps its number until its
process has ended and its jobs were reclaimed; only then is it removed. A grow adds the lowest
free numbers, and only while fewer than ``size`` seats exist *counting the leaving ones*, so
the processes alive never exceed the larger of the old and new sizes (``--max-processes``
holds through a quick shrink-then-grow), and a number is held by one seat at a time: a
worker's name stays unique and stable.

``SIGTTIN`` grows the pool by one, ``SIGTTOU`` shrinks it by one (two signals of a kind sent at
once may merge into one, in the kernel or in Python's handler: send them one at a time). A
supervisor on its own keeps at least one process; one that belongs to a fleet may run none
(its group's total is run by its peers) and keeps beating until a signal stops it.
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


def check_size(size: int, *, minimum: int = 1) -> int:
    """``size`` if a supervisor can run with it (``minimum``: 0 in a fleet); else ValueError."""
    if size >= minimum:
        return size
    if minimum == 0:
        raise ValueError(f"cannot resize to {size} worker process(es)")
    raise ValueError(
        f"cannot resize to {size} worker process(es): a supervisor keeps at least {minimum} "
        "(stop it instead)"
    )


def seat_changes(
    present: Collection[int],
    leaving: Collection[int],
    size: int,
    *,
    busy: Collection[int] = (),
) -> SeatChanges:
    """The changes that bring the seats numbered ``present`` (``leaving``: already sent away;
    ``busy``: running a job now) to ``size`` seats that stay."""
    staying = [index for index in present if index not in leaving]
    excess = len(staying) - size
    if excess > 0:
        # Idle first, then the highest numbers: the seats whose departure costs least.
        order = sorted(staying, key=lambda index: (index in busy, -index))
        return SeatChanges(leave=tuple(sorted(order[:excess])))
    # Leaving seats still count: a new process starts only once the total is below ``size``.
    free = [index for index in range(len(present) + size) if index not in present]
    return SeatChanges(add=tuple(free[: max(0, size - len(present))]))
