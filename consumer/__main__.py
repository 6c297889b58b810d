"""``python -m consumer``: the ``conveyor`` command (``worker``, ``run``, ``dead-letters``...)."""

from consumer.cli import main

if __name__ == "__main__":
    main()
