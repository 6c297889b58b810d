"""Prometheus metrics: what Conveyor counts, and how a ``/metrics`` endpoint shows it.

::

    worker process --JobCounters--> shared memory (one block per seat) --+
    supervisor (pool gauges, restarts) ----------------------------------+--> families --+
    backend counts() at scrape time (QueueDepth, bounded) ----------------+              |
    HTTP producer (EnqueuedCounter) --------------------------------------+              v
                                         exposition.MetricsRegistry: render() / MetricsServer

* ``job_counters``: the per-(queue, job) counters a worker process writes into shared memory;
* ``families``: every metric's name, type, help and labels, built as plain data;
* ``depth``: queue depth by state, read from the backend at scrape time, with a bound;
* ``exposition``: the only module that imports ``prometheus_client``;
* ``service``: what an asyncio HTTP producer shows (``ServiceMetrics``).

Importing this package imports nothing else: a worker process loads ``job_counters`` alone.
"""
