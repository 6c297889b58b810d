"""The contract suite's ``aborting`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_aborting import *  # noqa: F403
