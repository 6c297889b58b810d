"""How a group's desired total of worker processes is split between its live supervisors: pure.

Every supervisor of the group computes the same split from the same inputs (the desired total
and each live peer's ``--max-processes``), so they agree without talking to each other::

    wanted 9, maxima {a: 2, b: 4, c: 10}  ->  {a: 2, b: 4, c: 3}

Rules: supervisors are taken in id order; everyone gets the same share (the *level*) unless its
maximum is lower, in which case it runs its maximum and the rest is shared by the others; the
remainder of the division goes one each to the first supervisors (by id) that have room. The
total is capped by the sum of the maxima, and the split says so (``capped``, ``note``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """Each supervisor's share of a group's desired total."""

    shares: dict[str, int]
    """Worker processes per supervisor id, in id order."""
    wanted: int
    total: int
    """What the shares add up to: ``wanted``, or the sum of the maxima if that is lower."""

    @property
    def capped(self) -> bool:
        """True when the supervisors cannot run the wanted total between them."""
        return self.total < self.wanted

    @property
    def note(self) -> str:
        """Why the total falls short of ``wanted``, for logs and status; empty if it does not."""
        if not self.capped:
            return ""
        if not self.shares:
            return f"wants {self.wanted} worker process(es), but no supervisor of it is live"
        return (
            f"wants {self.wanted} worker process(es), but its {len(self.shares)} live "
            f"supervisor(s) run at most {self.total} (the sum of their --max-processes)"
        )


def split(wanted: int, maxima: Mapping[str, int]) -> Split:
    """Share ``wanted`` worker processes between the supervisors of ``maxima`` (id -> maximum).

    Raises:
        ValueError: ``wanted`` or a maximum is negative.
    """
    if wanted < 0 or any(most < 0 for most in maxima.values()):
        raise ValueError(f"cannot split {wanted} process(es) over maxima {dict(maxima)}")
    total = min(wanted, sum(maxima.values()))
    level = _level(total, sorted(maxima.values()))
    shares = {sid: min(maxima[sid], level) for sid in sorted(maxima)}
    extra = total - sum(shares.values())
    for sid in shares:  # in id order: the remainder goes to the first ones with room
        if extra and maxima[sid] > level:
            shares[sid] += 1
            extra -= 1
    return Split(shares=shares, wanted=wanted, total=total)


def _level(total: int, ascending: list[int]) -> int:
    """The share of everyone whose maximum is above it, with ``total`` to fill."""
    left = len(ascending)
    for most in ascending:
        if most > total // left:
            return total // left
        # This one is full at its maximum: the others share what is left.
        total -= most
        left -= 1
    return ascending[-1] if ascending else 0  # everyone is full
