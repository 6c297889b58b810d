"""The contract suite's ``control`` tests (``services.testing.contract``), on every backend."""

# pytest collects the test functions a module holds, imported ones too.
from services.testing.contract.test_control import *  # noqa: F403
