"""Test support shipped with Conveyor (needs the ``dev`` extra: ``pip install conveyor[dev]``).

``contract`` is the queue protocol's contract suite, importable so that a backend written
outside this tree can prove itself against it. Only this package imports pytest.
"""
