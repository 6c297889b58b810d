"""The queue protocol's contract suite, by role; a backend outside this tree runs it too.

Needs the ``dev`` extra (pytest): ``pip install conveyor[dev]``. Only ``services.testing``
imports pytest; nothing else in Conveyor does.

Modules, one per role of ``services.protocol``::

    test_putting.py      JobPutter: put-if-absent, batches, delays, status and results by id
    test_taking.py       JobTaker: get, settle exactly once, fencing, holds
    test_control.py      ConsumerControl: reclaim a dead consumer's jobs, poison jobs
    test_inspection.py   QueueInspector and QueueAdmin: counts, depth, dead letters, revive
    test_unique.py       JobPutter.put_unique: one live job per key and queue, TTLs
    test_fleet.py        FleetControl (``Backend.fleet()``): supervisor records, lost then
                         dropped; versioned desired sizes, compare-and-set; pauses; revision

**Fixture interface.** Every test takes one fixture, ``backend``: a ``BackendUnderTest``
(``subject``) around a fresh, empty backend opened with ``CONTRACT_SETTINGS``; its
``consumer(id)`` opens a consumer the way a child process does (``connector(id).open()``), and
the fixture closes it after the test. A backend provides that fixture in a pytest plugin (a
module, or a ``conftest.py``), for instance::

    # my_backend_contract.py
    import pytest
    from services.testing.contract import CONTRACT_SETTINGS, BackendUnderTest

    @pytest.fixture
    def backend():
        subject = BackendUnderTest("mine", MyBackend(CONTRACT_SETTINGS))
        yield subject
        subject.close()

and runs the suite with it::

    pytest --pyargs services.testing.contract -p my_backend_contract

(``tests/contract/test_suite_package.py`` runs it so, on the memory backend.) Or it
star-imports the test modules into test modules of its own, next to a ``conftest.py`` with the
fixture, as ``tests/contract`` does for the memory and redis backends.
"""

from __future__ import annotations

from services.testing.contract.subject import CONTRACT_SETTINGS, BackendUnderTest

__all__ = ["CONTRACT_SETTINGS", "BackendUnderTest"]
