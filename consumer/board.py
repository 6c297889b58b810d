"""Which jobs a worker process is running right now, in shared memory its supervisor reads.

When a child dies, only the jobs it was *running* can have killed it; jobs it had merely
prefetched are innocent. The supervisor reads this board after the death and tells the backend
which jobs to count as crash redeliveries, so a poison job is quarantined without taking its
neighbours with it. One writer (the child, under its mailbox lock), no lock to die holding.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

_ID_BYTES = 64


def new_board(capacity: int) -> Any:
    """A zeroed board for a child with ``capacity`` job slots; pass it as a Process argument."""
    return multiprocessing.get_context("spawn").RawArray("c", capacity * _ID_BYTES)


class RunningBoard:
    """Slots holding the ids of running jobs (empty slot: all zero bytes)."""

    def __init__(self, block: Any) -> None:
        self._block = block
        self._capacity = len(block) // _ID_BYTES
        self._free = list(range(self._capacity))

    def claim(self, job_id: str) -> int:
        """Write ``job_id`` in a free slot before the job starts; returns the slot (-1: full)."""
        if not self._free:
            return -1
        slot = self._free.pop()
        data = job_id.encode()[:_ID_BYTES].ljust(_ID_BYTES, b"\0")
        start = slot * _ID_BYTES
        self._block[start : start + _ID_BYTES] = data
        return slot

    def clear(self, slot: int) -> None:
        """Empty ``slot`` once its job has finished."""
        if slot < 0:
            return
        start = slot * _ID_BYTES
        self._block[start : start + _ID_BYTES] = b"\0" * _ID_BYTES
        self._free.append(slot)

    def job_ids(self) -> set[str]:
        """The ids on the board now (read by the supervisor after the child died)."""
        raw = bytes(self._block)
        found = set()
        for index in range(self._capacity):
            chunk = raw[index * _ID_BYTES : (index + 1) * _ID_BYTES].rstrip(b"\0")
            if chunk:
                found.add(chunk.decode(errors="replace"))
        return found
