"""The memory backend's per-child channels: round trips, real children, and children that die.

The trap these tests guard: a process SIGKILLed while blocked reading a shared
``multiprocessing.Queue`` dies holding the queue's lock and wedges every other reader. The memory
backend gives each child a channel of its own, so a killed child may wedge only its own channel,
and ``reclaim`` hands back whatever it held.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from services.backends import open_queue
from services.backends.memory.channel import SERVED, ChannelQueue, MemoryConnector
from services.errors import ConfigError, QueueFullError
from services.protocol import Backend, Completion
from services.settings import QueueSettings
from tests import helpers_memory

CTX = multiprocessing.get_context("spawn")
DEADLINE_S = 30.0
KILLED = "worker died: signal 9"


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``predicate`` every few milliseconds; fail the test if it stays false."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.01)


def serving_thread_waits_in_get(consumer_id: str) -> bool:
    """Whether the parent thread serving ``consumer_id`` is inside ``MemoryState.get``.

    The only way to know a child is *blocked* in ``get`` (not about to call it): look at the
    stack of the serving thread, named ``conveyor-memory-<consumer id>`` by the backend.
    """
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if thread.name != f"conveyor-memory-{consumer_id}" or thread.ident is None:
            continue
        frame = frames.get(thread.ident)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "get" and code.co_filename.endswith("memory/state.py"):
                return True
            frame = frame.f_back
    return False


@pytest.fixture
def queue() -> Iterator[Backend]:
    backend = open_queue("memory://")
    yield backend
    backend.close()


@pytest.fixture
def processes() -> Iterator[list[BaseProcess]]:
    """Processes a test starts; any still alive at the end are killed and reaped."""
    started: list[BaseProcess] = []
    yield started
    for process in started:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)
        process.join(10)


def start(processes: list[BaseProcess], target: Callable[..., None], *args: Any) -> BaseProcess:
    process = CTX.Process(target=target, args=args, daemon=True)
    process.start()
    processes.append(process)
    return process


def kill(process: BaseProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    assert process.exitcode == -signal.SIGKILL


def collect(results: Any, count: int, timeout_s: float) -> list[tuple[str, Any, Any]]:
    """Up to ``count`` reports from a children's results queue, within ``timeout_s``."""
    found: list[tuple[str, Any, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count and (remaining := deadline - time.monotonic()) > 0:
        try:
            found.append(results.get(timeout=remaining))
        except Exception:  # queue.Empty: the deadline passed
            break
    return found


# -- the channel in the same process ----------------------------------------------------------
def test_same_process_channel_round_trip(queue: Backend) -> None:
    # Given a channel opened in this process, served by the parent's thread
    child = queue.connector("c1").open()

    # When the job goes in and out through the channel
    child.put("default", "j1", b'"payload"')
    depth_seen_by_parent = queue.depth("default")
    deliveries = child.get(["default"], max_count=10, timeout_s=1.0)
    running = queue.status("j1")
    rejected = child.ack([Completion(deliveries[0], b"42")])

    # Then the parent's state saw each step, and the result is kept
    assert depth_seen_by_parent == 1
    assert [(d.job_id, d.body, d.redeliveries) for d in deliveries] == [("j1", b'"payload"', 0)]
    assert running is not None and running.status == "running"
    assert rejected == 0
    done = queue.status("j1")
    assert done is not None and (done.status, done.result) == ("done", b"42")
    assert child.depth("default") == 0


def test_channel_reraises_backend_errors_in_the_child() -> None:
    # Given a bounded queue reached through a channel
    backend = open_queue("memory://", QueueSettings(max_depth=1, put_timeout_s=0.05))
    try:
        child = backend.connector("c1").open()
        child.put("default", "j1", b"1")

        # When the child overfills it, or asks to start consumers of its own
        # Then the parent's errors are raised in the child, and nothing extra was stored
        with pytest.raises(QueueFullError, match="full"):
            child.put("default", "j2", b"2")
        with pytest.raises(ConfigError, match="only its root process"):
            child.connector("c2")
        assert backend.depth("default") == 1
    finally:
        backend.close()


def test_a_channel_carries_protocol_calls_only(queue: Backend) -> None:
    # Given a child's channel
    connector = queue.connector("c1")
    assert isinstance(connector, MemoryConnector)
    child = ChannelQueue(connector)
    queue.put("default", "j1", b"1")

    # When the child asks for a method outside the protocol
    # Then the parent refuses it and changes nothing
    with pytest.raises(ConfigError, match="does not serve '_channels'"):
        child._call("_channels")
    assert queue.depth("default") == 1
    # And every call a channel serves is a method of the protocol
    protocol = {name for name in dir(Backend) if not name.startswith("_")}
    assert protocol >= SERVED


def test_ack_through_a_released_channel_is_fenced(queue: Backend) -> None:
    # Given a job in flight for c1, handed back because c1 was declared dead
    child = queue.connector("c1").open()
    queue.put("default", "j1", b"1")
    [delivery] = child.get(["default"], max_count=1, timeout_s=1.0)
    assert queue.reclaim("c1", KILLED) == 1

    # When the stale delivery is acked by the parent on c1's behalf
    rejected = queue.ack([Completion(delivery)])

    # Then the ack is rejected, and the job waits for another consumer
    assert rejected == 1
    assert queue.depth("default") == 1


def test_put_if_absent_through_a_channel(queue: Backend) -> None:
    # Given a channel opened in this process, and a job already put by the parent
    child = queue.connector("c1").open()
    assert queue.put("default", "j1", b"1") is True

    # When the child puts the same id, and a batch mixing it with new ids
    again = child.put("default", "j1", b"again")
    flags = child.put_many("default", [("j2", b"2"), ("j1", b"x"), ("j2", b"y")])

    # Then only the new id was stored, and the counts say so on both sides
    assert (again, flags) == (False, [True, False, False])
    assert child.counts("default") == queue.counts("default")
    assert child.counts("default").waiting == 2


def test_holds_through_a_channel(queue: Backend) -> None:
    # Given a child holding two jobs, one of which it settled
    child = queue.connector("c1").open()
    queue.put_many("default", [("j1", b"1"), ("j2", b"2")])
    first, second = child.get(["default"], max_count=2, timeout_s=1.0)
    child.ack([Completion(first)])
    child.started([second])

    # Then its hold never lapses, it still holds the other, and it has no alarms
    assert child.held_until() == math.inf
    assert child.confirm([first, second]) == [second]
    assert child.alarms() == []
    assert queue.reclaim("c1", KILLED) == 1
    assert child.confirm([second]) == []


def test_a_present_id_is_not_refused_by_a_full_queue() -> None:
    # Given a full bounded queue holding j1
    backend = open_queue("memory://", QueueSettings(max_depth=1, put_timeout_s=5.0))
    try:
        child = backend.connector("c1").open()
        assert child.put("default", "j1", b"1") is True
        # When j1 is put again (its first reply lost) / Then nothing is stored, at once,
        # instead of waiting for room it does not need and failing as full
        assert child.put("default", "j1", b"1") is False
        assert child.put_many("default", [("j1", b"1")]) == [False]
        assert backend.depth("default") == 1
    finally:
        backend.close()


def test_dead_letters_stay_bounded_after_a_revive() -> None:
    # Given a memory queue keeping at most three dead letters, holding d0..d2
    backend = open_queue("memory://", QueueSettings(dead_letter_max=3))
    try:
        child = backend.connector("c1").open()
        bury(child, ["d0", "d1", "d2"])
        # When one is revived (and taken again), and three more die
        assert backend.revive("default", ["d1", "unknown"]) == 1
        assert [d.job_id for d in child.get(["default"], timeout_s=1)] == ["d1"]
        assert backend.depth("default") == 0
        bury(child, ["d3", "d4"])
        # Then the others stayed dead, and the bound still holds: the newest three remain
        assert [d.job_id for d in backend.dead_letters("default")] == ["d4", "d3", "d2"]
    finally:
        backend.close()


def bury(queue: Backend, job_ids: list[str]) -> None:
    """Put ``job_ids``, take them and dead-letter each, in order."""
    queue.put_many("default", [(job_id, b"1") for job_id in job_ids])
    for delivery in queue.get(["default"], max_count=len(job_ids), timeout_s=1):
        assert queue.dead_letter(delivery, "boom")


# -- real child processes ---------------------------------------------------------------------
def test_real_child_puts_and_gets(queue: Backend, processes: list[BaseProcess]) -> None:
    # Given a spawned child with its own channel
    results = CTX.Queue()
    job_ids = [f"job-{n}" for n in range(5)]

    # When it puts five jobs, takes them back and acks them with their body as result
    child = start(processes, helpers_memory.put_then_get, queue.connector("c1"), job_ids, results)
    [(kind, taken, depth)] = collect(results, 1, DEADLINE_S)
    child.join(DEADLINE_S)

    # Then it took exactly its jobs, in order, and the parent's state shows them done
    assert (kind, taken, depth) == ("taken", job_ids, 0)
    assert child.exitcode == 0
    for job_id in job_ids:
        status = queue.status(job_id)
        assert status is not None
        assert (status.status, status.result) == ("done", f'"{job_id}"'.encode())


def test_a_childs_put_repeated_after_a_lost_reply_is_stored_once(
    queue: Backend, processes: list[BaseProcess]
) -> None:
    # Given a spawned producer child that puts a job, then puts it again with the same id
    # (what a producer does when the first reply was lost)
    results = CTX.Queue()
    child = start(processes, helpers_memory.put_twice, queue.connector("c1"), "order-1", results)
    [(kind, flags, waiting)] = collect(results, 1, DEADLINE_S)
    child.join(DEADLINE_S)

    # Then the second put stored nothing, and the job runs once, with the first body
    assert (kind, flags, waiting) == ("put", [True, False], 1)
    [delivery] = queue.get(["default"], max_count=10, timeout_s=1.0)
    assert (delivery.job_id, delivery.body) == ("order-1", b'"first"')
    assert queue.get(["default"], timeout_s=0.1) == []


def test_child_killed_while_blocked_in_get_does_not_hang_others(
    queue: Backend, processes: list[BaseProcess]
) -> None:
    # Given two children blocked in get with long timeouts, on channels of their own
    results = CTX.Queue()
    ready_a, ready_b = CTX.Event(), CTX.Event()
    victim = start(processes, helpers_memory.block_in_get, queue.connector("a"), ready_a)
    survivor = start(
        processes, helpers_memory.consume_forever, queue.connector("b"), ready_b, results
    )
    assert ready_a.wait(DEADLINE_S) and ready_b.wait(DEADLINE_S)
    wait_until(lambda: serving_thread_waits_in_get("a"), "child a to block in get")
    wait_until(lambda: serving_thread_waits_in_get("b"), "child b to block in get")

    # When one is SIGKILLed and jobs arrive
    kill(victim)
    started = time.monotonic()
    for n in range(3):
        queue.put("default", f"job-{n}", b"1")
    put_took_s = time.monotonic() - started

    # Then the parent did not hang, and the survivor gets every job the dead child's pending
    # get did not grab (at most one: it asked for max_count=1)
    assert put_took_s < 5.0
    first = collect(results, 2, DEADLINE_S)
    assert len(first) == 2
    # ... and once the dead child is released, whatever its pending get grabbed comes back
    released = queue.reclaim("a", KILLED)
    taken = first + collect(results, 1, DEADLINE_S)
    assert sorted(job_id for _, job_id, _ in taken) == ["job-0", "job-1", "job-2"]
    assert released in (0, 1)
    redeliveries = sorted(count for _, _, count in taken)
    assert redeliveries == [0, 0, released]  # a grabbed job comes back as redelivered once
    assert queue.depth("default") == 0

    queue.put("default", helpers_memory.STOP, b"1")
    survivor.join(DEADLINE_S)
    assert survivor.exitcode == 0
    assert collect(results, 1, 0.5) == []  # no job was delivered twice


def test_jobs_put_after_releasing_a_child_killed_in_get_stay_available(
    queue: Backend, processes: list[BaseProcess]
) -> None:
    # Given a child killed while blocked in get, and released as the supervisor does
    ready = CTX.Event()
    victim = start(processes, helpers_memory.block_in_get, queue.connector("a"), ready)
    assert ready.wait(DEADLINE_S)
    wait_until(lambda: serving_thread_waits_in_get("a"), "child a to block in get")
    kill(victim)
    assert queue.reclaim("a", KILLED) == 0

    # When a job is put after the release, once a's serving thread is out of its get
    queue.put("default", "job-0", b"1")
    wait_until(lambda: not serving_thread_waits_in_get("a"), "a's pending get to end")

    # Then the job waits for a live consumer: nothing holds it for the released consumer "a"
    wait_until(lambda: queue.depth("default") == 1, "the job to be waiting", timeout_s=3.0)
    assert [d.job_id for d in queue.get(["default"], max_count=10, timeout_s=0)] == ["job-0"]


def test_release_hands_a_killed_childs_job_back(
    queue: Backend, processes: list[BaseProcess]
) -> None:
    # Given a child that holds a job in flight
    results = CTX.Queue()
    queue.put("default", "job-0", b'"body"')
    holder = start(processes, helpers_memory.hold_one_job, queue.connector("c1"), results)
    assert collect(results, 1, DEADLINE_S) == [("holding", [("job-0", 0)], None)]
    assert queue.depth("default") == 0

    # When it is SIGKILLed and released
    kill(holder)
    released = queue.reclaim("c1", KILLED)

    # Then its job is back at the front of the queue, marked as redelivered once
    assert released == 1
    deliveries = queue.get(["default"], max_count=10, timeout_s=0)
    assert [(d.job_id, d.body, d.redeliveries) for d in deliveries] == [("job-0", b'"body"', 1)]


def test_job_whose_consumers_keep_dying_is_dead_lettered(
    queue: Backend, processes: list[BaseProcess]
) -> None:
    # Given a job, and the default poison limit of three redeliveries
    queue.put("default", "poison", b'"body"')
    limit = QueueSettings().max_redeliveries
    assert limit == 3

    for round_ in range(limit):
        # When a child takes it and is SIGKILLed, and the parent releases it
        # (a results queue per child: a child killed just after writing to a shared
        # multiprocessing.Queue may still hold its write lock and wedge the next writer)
        results = CTX.Queue()
        holder = start(
            processes, helpers_memory.hold_one_job, queue.connector(f"c{round_}"), results
        )
        assert collect(results, 1, DEADLINE_S) == [("holding", [("poison", round_)], None)]
        kill(holder)
        assert queue.reclaim(f"c{round_}", KILLED) == 1

        # Then it comes back until the limit, and is quarantined after it
        if round_ < limit - 1:
            assert queue.depth("default") == 1
            assert queue.dead_letters("default") == []

    assert queue.depth("default") == 0
    [letter] = queue.dead_letters("default")
    assert (letter.job_id, letter.body) == ("poison", b'"body"')
    assert f"{KILLED}, 3 times" in letter.reason
    status = queue.status("poison")
    assert status is not None and status.status == "dead"
