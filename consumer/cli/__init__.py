"""The consumer's ``conveyor`` commands, one module each: ``worker``, ``run``, ``dead_letters``,
and the pool flags they share (``pool_options``).

``services.cli.app`` puts them together. ``main`` here is the same ``conveyor`` group under its
old name (the console script used to point at ``consumer.cli:main``).
"""

from services.cli.app import main

__all__ = ["main"]
