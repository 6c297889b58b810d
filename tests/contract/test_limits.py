"""The contract suite's ``limits`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_limits import *  # noqa: F403
