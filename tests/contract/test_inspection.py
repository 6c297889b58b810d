"""The contract suite's ``inspection`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_inspection import *  # noqa: F403
