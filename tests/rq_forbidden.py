"""A module no RQ job may make a Conveyor worker import: importing it records the import in
the file ``CONVEYOR_RQ_IMPORT_MARKER`` names (tests.test_rq_direction's allow-list test)."""

from __future__ import annotations

import os
from pathlib import Path

_marker = os.environ.get("CONVEYOR_RQ_IMPORT_MARKER")
if _marker:
    Path(_marker).write_text("imported")


def run() -> str:
    return "should never run under Conveyor"
