"""The contract suite's ``taking`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_taking import *  # noqa: F403
