"""The contract suite's scheduling tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_scheduling import *  # noqa: F403
