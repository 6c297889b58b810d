"""The contract suite's ``putting`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_putting import *  # noqa: F403
