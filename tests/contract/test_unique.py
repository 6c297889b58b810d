"""The contract suite's ``unique`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_unique import *  # noqa: F403
