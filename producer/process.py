"""A producer process: runs its share of a feed and enqueues it in batches (spawn-safe).

Build in the parent, act in the child: ``ProducerSpec`` is plain data; the process opens its own
queue connection through the connector and counts what it produced in shared memory.
"""

from __future__ import annotations

import itertools
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from producer.feeds import feed_share, load_feed
from producer.producer import Producer
from services.errors import ConveyorError
from services.lifecycle import die_with_parent, exit_now
from services.loading import load_registry
from services.logs import LogFormat, LogSettings, setup_logging
from services.protocol import Connector
from services.stats import Field, Stats

log = logging.getLogger("conveyor.producer")

BATCH = 100


@dataclass(frozen=True)
class ProducerSpec:
    """What one producer process runs."""

    index: int
    count: int
    connector: Connector
    feed: str
    jobs: str | None
    queue: str
    stats_block: Any
    feed_options: dict[str, Any] = field(default_factory=dict)
    log_level: int = logging.INFO
    log_format: LogFormat = LogFormat.TEXT


def producer_main(spec: ProducerSpec) -> None:
    """Entry point of a producer process; exits 0 when its share is enqueued, 1 on error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the parent, which stops us
    die_with_parent(signal.SIGKILL)  # a producer holds no job: it may simply vanish
    name = f"producer-{spec.index}"
    setup_logging(
        LogSettings(spec.log_level, spec.log_format),
        process=name,
        text_format=f"{name} %(message)s",
    )
    stats = Stats(spec.stats_block)
    try:
        produce(spec, stats)
    except ConveyorError as exc:
        log.error("stopped: %s", exc)
        exit_now(1)
    exit_now(0)


def produce(spec: ProducerSpec, stats: Stats) -> int:
    """Enqueue this producer's share of the feed; returns how many jobs it enqueued."""
    registry = load_registry(spec.jobs) if spec.jobs else None
    feed = load_feed(spec.feed)
    producer = Producer(spec.connector.open(), registry=registry, name=spec.queue)
    calls = feed_share(feed, index=spec.index, count=spec.count, options=spec.feed_options)
    produced = 0
    while batch := list(itertools.islice(calls, BATCH)):
        produced += len(producer.enqueue_many(batch))
        stats.set(Field.PRODUCED, produced)
    return produced
