"""The probes of a failover run (``tests.failover_run``): a steady producer and a sampler.

``SteadyProducer`` puts one ledger job every ``PUT_GAP_S`` and notes when each put was
confirmed; a put that fails is sent again with the same id until confirmed (put if absent:
stored at most once), as a careful producer does. ``DoneSampler`` reads a queue's done counter
every ``SAMPLE_GAP_S``, so the run can tell when work flows again. ``replica_lag`` reads how far
a master's replica is behind it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import redis
from redis.exceptions import RedisClusterException

from producer import Producer
from services.backends.redis import keys
from services.backends.redis.connection import disconnect, make_client
from services.backends.redis.queue import RedisQueue
from services.errors import BackendUnavailableError
from services.job import new_job_id
from services.settings import QueueSettings
from tests import jobs_system
from tests.redis_topology_fixtures import ask
from tests.topology_workload import quick

PUT_GAP_S = 0.025
"""The producer's pace (about 40 puts a second): a load generator's rate, not a wait."""
SAMPLE_GAP_S = 0.02
"""How often the sampler reads the done counter: the resolution of *flowing*."""
GIVE_UP_S = 60.0
"""Longest a producer sends one put again before it records it as unconfirmed."""


class SteadyProducer(threading.Thread):
    """Puts one ledger job every ``PUT_GAP_S`` on ``queue`` until stopped. A put that fails is
    sent again with the same id (put if absent: stored at most once) until it is confirmed."""

    def __init__(self, url: str, queue: str, ledger: Path, *, durable: bool) -> None:
        super().__init__(name=f"producer-{queue}", daemon=True)
        settings = QueueSettings(durable_replicas=1 if durable else 0)
        self.backend = RedisQueue(url, settings)
        self.queue = queue
        self.ledger = ledger
        self.confirmed: list[tuple[str, str, float]] = []
        """(job id, ledger key, when its put was confirmed)."""
        self.unconfirmed: list[tuple[str, str]] = []
        self.failures = 0
        self.error: BaseException | None = None
        """What stopped the thread early: a put failing otherwise than "unavailable"."""
        self._halt = threading.Event()

    def run(self) -> None:
        producer = Producer(self.backend, registry=jobs_system.registry, name=self.queue)
        count = 0
        try:
            while not self._halt.is_set():
                self._put(producer, new_job_id(), f"{self.queue}-p{count:05d}")
                count += 1
                self._halt.wait(PUT_GAP_S)
        except Exception as exc:  # noted for the test, which fails at once with it
            self.error = exc
        finally:
            self.backend.close()

    def check(self) -> None:
        """Raise ``AssertionError`` if a put failed with anything but "unavailable"."""
        if self.error is not None:
            raise AssertionError(f"a put failed: {type(self.error).__name__}: {self.error}")

    def _put(self, producer: Producer, job_id: str, key: str) -> None:
        give_up = time.monotonic() + GIVE_UP_S
        self.unconfirmed.append((job_id, key))  # until confirmed: it may be stored
        while time.monotonic() < give_up:
            try:
                producer.enqueue("ledger", str(self.ledger), key, quick(len(self.confirmed)),
                                 job_id=job_id)  # fmt: skip
            except BackendUnavailableError:
                self.failures += 1
                time.sleep(0.05)  # the retry's pace while the topology fails over
                continue
            self.confirmed.append((job_id, key, time.time()))
            self.unconfirmed.remove((job_id, key))
            return

    def stop(self) -> None:
        self._halt.set()
        self.join(GIVE_UP_S + 10)


class DoneSampler(threading.Thread):
    """Reads ``queue``'s done counter every ``SAMPLE_GAP_S``: (time, value or None)."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(name=f"sampler-{queue}", daemon=True)
        self.client = make_client(url, timeout_s=1.0)
        self.key = keys.of(queue).counts
        self.samples: list[tuple[float, int | None]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_GAP_S):
            value: int | None = None
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                value = int(self.client.hget(self.key, "done") or 0)
            self.samples.append((time.time(), value))

    def flowing_since(self, killed_at: float) -> float | None:
        """When the counter first moved above its first value read after ``killed_at``."""
        after = [
            (at, value) for at, value in list(self.samples) if at > killed_at and value is not None
        ]
        if not after:
            return None
        base = after[0][1]
        return next((at for at, value in after if value is not None and value > base), None)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        disconnect(self.client)


def replica_lag(port: int) -> int:
    """Bytes the first replica of the master on ``port`` is behind it (0 if unknown): the
    master's offset, then the replica's own (the master's view of it is up to 1 s old)."""
    reply = ask(port, "INFO", "replication")
    replica = reply.get("slave0") if isinstance(reply, dict) else None
    if not isinstance(reply, dict) or not isinstance(replica, dict):
        return 0
    offset = int(reply["master_repl_offset"])
    own = ask(int(replica["port"]), "INFO", "replication")
    if not isinstance(own, dict) or "slave_repl_offset" not in own:
        return 0
    return max(0, offset - int(own["slave_repl_offset"]))
