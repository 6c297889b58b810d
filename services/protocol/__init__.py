"""The queue protocol: the only thing producers and consumers know about a backend.

Backends move opaque bytes (made by ``services.codec``); they never decode a job. The job id
travels next to the body so a backend can keep per-job bookkeeping without parsing it.

Data flow::

    Producer --put/put_many--> [queue] --get--> Worker --ack / retry / dead_letter / hand_back-->
                                  ^                |
                                  +--- reclaim ----+  (consumer died: its jobs come back)
                                       Supervisor

The protocol is split by role, so that each caller depends on the smallest surface it uses;
one backend class implements them all (``Backend``, which ``open_queue`` returns)::

    role              module          who uses it
    ----------------  --------------  ------------------------------------------------------
    JobPutter         putting.py      Producer (``conveyor enqueue``): put, follow a job by id
    JobTaker          taking.py       Worker: get, settle (ack/retry/dead_letter/hand_back)
    JobLimiter        limiting.py     Worker, for jobs with limits: admit (take concurrency
                                      permits and a rate's start) or park the job
    ConsumerControl   control.py      Supervisor, and the ``conveyor run`` pipeline (which
                                      also reads counts: + QueueInspector): connector, reclaim
    QueueInspector    inspection.py   CLI status and ``dead-letters list``, ``conveyor serve``:
                                      counts, queues, letters, status
    QueueAdmin        inspection.py   CLI ``dead-letters requeue``, ``conveyor serve``: revive,
                                      delete dead letters, cancel a waiting job,
                                      abort a running one (``conveyor abort``)
    FleetControl      fleet.py        Supervisor (beat, reconcile, autoscale), CLI ``scale``,
                                      ``pause``, ``resume``, status: supervisors, desired
                                      sizes, paused queues (``Backend.fleet()`` hands it out)
    QueueBrowser      browsing.py     ``conveyor serve``'s dashboard: pages of a queue's
                                      waiting or delayed jobs (Redis)
    LimitInspector    limit_usage.py  the dashboard: permits held, jobs parked per limit
    HistoryStore      history.py      ``conveyor serve``: its sampler records each queue's
                                      numbers in capped per-minute and per-quarter buckets,
                                      its dashboard reads them (``KeepsHistory``)
    ScheduleStore     scheduling.py   Schedulers (``consumer.scheduler``), ``conveyor cron``:
                                      the leader's lease, the newest due time fired per entry
    Backend           backend.py      backends and ``open_queue``: every role
    Async*            aio.py          ``conveyor serve`` on its event loop: the putter,
                                      inspector and admin roles as coroutines, and
                                      AsyncBackend (``open_async_queue``)

Each role module's docstring carries the clauses of the delivery contract that belong to it;
``services.testing.contract`` proves them on every backend. ``JobQueue`` is the old name of
``Backend`` and stays as its alias.
"""

from __future__ import annotations

from services.protocol.aio import AsyncBackend, AsyncJobPutter, AsyncQueueAdmin, AsyncQueueInspector
from services.protocol.backend import Backend
from services.protocol.browsing import Listed, QueueBrowser
from services.protocol.control import Connector, ConsumerControl
from services.protocol.fleet import (
    AutoscaleSettings,
    DesiredState,
    FleetControl,
    PauseState,
    SupervisorRecord,
)
from services.protocol.history import HistoryStore, KeepsHistory, Snapshot
from services.protocol.inspection import ABORTED, CANCELLED, QueueAdmin, QueueInspector
from services.protocol.limiting import JobLimiter
from services.protocol.putting import JobPutter
from services.protocol.records import (
    Cancellation,
    Completion,
    DeadLetter,
    Delivery,
    JobStatus,
    QueueCounts,
)
from services.protocol.scheduling import ScheduleStore
from services.protocol.taking import JobTaker

JobQueue = Backend
"""The old name of ``Backend``."""

__all__ = [
    "ABORTED",
    "CANCELLED",
    "AsyncBackend",
    "AsyncJobPutter",
    "AsyncQueueAdmin",
    "AsyncQueueInspector",
    "AutoscaleSettings",
    "Backend",
    "Cancellation",
    "Completion",
    "Connector",
    "ConsumerControl",
    "DeadLetter",
    "Delivery",
    "DesiredState",
    "FleetControl",
    "HistoryStore",
    "JobLimiter",
    "JobPutter",
    "JobQueue",
    "JobStatus",
    "JobTaker",
    "KeepsHistory",
    "Listed",
    "PauseState",
    "QueueAdmin",
    "QueueBrowser",
    "QueueCounts",
    "QueueInspector",
    "ScheduleStore",
    "Snapshot",
    "SupervisorRecord",
]
