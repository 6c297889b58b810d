"""The comparison harness: the same workloads on Conveyor and its peers, one JSON per run.

``python -m benchmarks.run`` runs everything (``run.py``); ``python -m benchmarks.plot`` turns
a run's JSON into charts (``plot.py``). Its dependencies are the ``bench`` extra.
"""
