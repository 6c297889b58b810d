"""Periodic jobs the scheduler tests run in real worker processes (``tests/test_periodic_*``).

``tick`` fires every second on queue ``cron-q`` and appends one line per run to the file named
by ``CONVEYOR_TEST_LEDGER``: a ledger outside the queue, counting executions.
"""

from __future__ import annotations

import os
import time

from services.registry import Registry

registry = Registry()

LEDGER_ENV = "CONVEYOR_TEST_LEDGER"


@registry.periodic(1.0, queue="cron-q")
def tick() -> None:
    with open(os.environ[LEDGER_ENV], "a", encoding="utf-8") as ledger:
        ledger.write(f"{os.getpid()} {time.time():.3f}\n")


@registry.periodic("*/5 * * * *", queue="reports", missed="catch_up", max_catch_up=3)
def report() -> None:
    """Listed by ``conveyor cron list``; never due within a test."""
