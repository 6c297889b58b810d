"""The RQ backend: Conveyor's queue protocol on RQ's own queues, jobs and registries.

``rq+redis://host:port/db`` (``rq+rediss://`` with TLS) selects it. Jobs live where RQ keeps
them (``rq:queue:<name>``, ``rq:job:<id>``, the Started/Failed/Finished/Scheduled registries),
written through the ``rq`` package, so RQ producers, ``rq worker`` and RQ's dashboards share
the queues with Conveyor producers and consumers. What RQ has no model for (fleet control,
limits, periodic leases) lives in Conveyor's own ``cv:`` keys on the same server, through the
Redis backend's modules. Only this package imports ``rq``.

Modules::

    urls.py       rq+redis:// URLs: the Redis URL beneath, the serializer chosen
    mapping.py    RQ job <-> Conveyor body, RQ statuses <-> Conveyor statuses (pure)
    taking.py     atomic pop into StartedJobRegistry, the executions RQ expects
    settling.py   finish, fail, retry, hand back, requeue after a crash: claim, then write
    leases.py     the heartbeat: renews held executions, recovers expired ones, rq worker key
    putting.py    RQ enqueues (put-if-absent by id), unique keys, waiting for a job
    reads.py      status, counts, dead letters (FailedJobRegistry), revive, cancel
    backend.py    RqQueue: the roles wired together; RqConnector for child processes
"""
